//! A real OCI registry on loopback: Debian's `docker-registry` (distribution 2.8) with
//! filesystem storage in a temporary folder, stopped and removed on drop.

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};

pub struct OciRegistry {
    child: Child,
    dir: PathBuf,
    port: u16,
}

impl OciRegistry {
    /// Starts an open registry on a free loopback port and waits until `GET /v2/` answers.
    pub fn start() -> anyhow::Result<Self> {
        Self::start_with(None)
    }

    /// Starts a registry that requires this user and password (htpasswd, bcrypt).
    pub fn start_with_login(user: &str, password: &str) -> anyhow::Result<Self> {
        Self::start_with(Some((user, password)))
    }

    fn start_with(login: Option<(&str, &str)>) -> anyhow::Result<Self> {
        let binary = Path::new("/usr/bin/docker-registry");
        if !binary.exists() {
            bail!(
                "{} not found: install Debian's registry with `apt-get install docker-registry` (`make test` does)",
                binary.display()
            );
        }
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let dir = std::env::temp_dir().join(format!("kfp-oci-registry-{}-{port}", std::process::id()));
        std::fs::create_dir_all(dir.join("storage"))?;
        let config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
             http:\n  addr: 127.0.0.1:{port}\n",
            dir.join("storage").display()
        );
        let config = match login {
            None => config,
            Some((user, password)) => {
                let hash = bcrypt::hash(password, 4)?;
                std::fs::write(dir.join("htpasswd"), format!("{user}:{hash}\n"))?;
                format!(
                    "{config}auth:\n  htpasswd:\n    realm: kfp-test\n    path: {}\n",
                    dir.join("htpasswd").display()
                )
            }
        };
        std::fs::write(dir.join("config.yml"), config)?;
        let log = std::fs::File::create(dir.join("registry.log"))?;
        let child = Command::new(binary)
            .args(["serve", &dir.join("config.yml").display().to_string()])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting docker-registry")?;
        let mut registry = Self { child, dir, port };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !registry.answers() {
            if let Some(status) = registry.child.try_wait()? {
                bail!(
                    "docker-registry exited ({status}): {}",
                    std::fs::read_to_string(registry.dir.join("registry.log"))?
                );
            }
            if Instant::now() > deadline {
                bail!("docker-registry not answering on 127.0.0.1:{port} after 20 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(registry)
    }

    fn answers(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) else { return false };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
        let _ = write!(stream, "GET /v2/ HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
        let mut response = String::new();
        let _ = stream.read_to_string(&mut response);
        // An open registry answers 200, one with a login 401: either way it is serving.
        matches!(response.split_whitespace().nth(1), Some("200" | "401"))
    }

    /// `127.0.0.1:<port>`, as it appears in references.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Where the registry keeps the blob with this digest (`sha256:<hex>`), to tamper with it.
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.dir.join("storage/docker/registry/v2/blobs/sha256").join(&hex[..2]).join(hex).join("data")
    }
}

impl Drop for OciRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
