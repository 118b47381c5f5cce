//! A real control plane on loopback: etcd, kube-apiserver and kube-controller-manager built by
//! `tests/cluster/build.sh`, started on free ports with fresh certificates, torn down on drop.

use std::{
    fs::File,
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use base64::{Engine, engine::general_purpose::STANDARD as BASE64};
use kube::{
    Client, Config,
    config::{KubeConfigOptions, Kubeconfig},
};

use crate::{
    binaries, crds,
    pki::{self, Pki},
};

/// How long each component may take to become ready. Generous: a cold 2-core machine under
/// a parallel build is slow, and a flaky start is worse than a slow one.
const READY_TIMEOUT: Duration = Duration::from_secs(90);
const POLL_INTERVAL: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, Default)]
pub struct ClusterOptions {
    /// Install every `*.yaml` CRD in this folder and wait until they are served.
    pub crd_dir: Option<PathBuf>,
}

/// A running control plane. Dropping it stops the processes and removes its folder.
pub struct TestCluster {
    dir: PathBuf,
    kubeconfig_path: PathBuf,
    server: String,
    /// In start order; stopped in reverse.
    processes: Vec<ManagedProcess>,
}

struct ManagedProcess {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl TestCluster {
    /// Builds (or reuses) the binaries and starts etcd → kube-apiserver → the CRDs →
    /// kube-controller-manager.
    pub async fn start(options: ClusterOptions) -> anyhow::Result<Self> {
        let bin = binaries::ensure()?;
        let dir = make_cluster_dir()?;
        let mut cluster =
            Self { kubeconfig_path: dir.join("admin.kubeconfig"), dir, server: String::new(), processes: Vec::new() };
        cluster.boot(&bin, &options).await?;
        Ok(cluster)
    }

    async fn boot(&mut self, bin: &Path, options: &ClusterOptions) -> anyhow::Result<()> {
        let started = Instant::now();
        let pki = Pki::generate(&self.dir)?;

        let (etcd_client, etcd_peer, api_port) = (free_port()?, free_port()?, free_port()?);
        let etcd_url = format!("http://127.0.0.1:{etcd_client}");
        let peer_url = format!("http://127.0.0.1:{etcd_peer}");
        self.spawn(
            bin,
            "etcd",
            &[
                "--name=test".into(),
                format!("--data-dir={}", self.dir.join("etcd").display()),
                format!("--listen-client-urls={etcd_url}"),
                format!("--advertise-client-urls={etcd_url}"),
                format!("--listen-peer-urls={peer_url}"),
                format!("--initial-advertise-peer-urls={peer_url}"),
                format!("--initial-cluster=test={peer_url}"),
                // Durability is worthless for a throwaway test store and fsync dominates latency.
                "--unsafe-no-fsync=true".into(),
                "--log-level=warn".into(),
            ],
        )?;
        self.wait_for("etcd", || Ok(http_get_status(etcd_client, "/health")? == 200))?;

        self.server = format!("https://127.0.0.1:{api_port}");
        let dir = self.dir.clone();
        let file = move |name: &str| dir.join(name).display().to_string();
        let apiserver_args = vec![
            format!("--etcd-servers={etcd_url}"),
            "--bind-address=127.0.0.1".into(),
            "--advertise-address=127.0.0.1".into(),
            format!("--secure-port={api_port}"),
            // A loopback address in the `kubernetes` Endpoints is rejected by validation.
            "--endpoint-reconciler-type=none".into(),
            format!("--tls-cert-file={}", file(pki::SERVER_CERT)),
            format!("--tls-private-key-file={}", file(pki::SERVER_KEY)),
            format!("--client-ca-file={}", file(pki::CA_CERT)),
            "--authorization-mode=RBAC".into(),
            format!("--service-account-issuer={}", self.server),
            format!("--service-account-key-file={}", file(pki::SA_PUB)),
            format!("--service-account-signing-key-file={}", file(pki::SA_KEY)),
            "--service-cluster-ip-range=10.0.0.0/24".into(),
            "--allow-privileged=true".into(),
            // No kubelet runs pods here, and the default ServiceAccount appears asynchronously:
            // the admission plugin would only make pod creation racy.
            "--disable-admission-plugins=ServiceAccount".into(),
        ];
        self.spawn(bin, "kube-apiserver", &apiserver_args)?;
        self.write_kubeconfig(&pki)?;
        let client = self.client().await?;
        self.wait_for_async("kube-apiserver", || async {
            Ok(client
                .request_text(http::Request::get("/readyz").body(Vec::new())?)
                .await
                .is_ok_and(|body| body == "ok"))
        })
        .await?;

        // The CRDs go in before the controller manager starts, so its garbage collector knows
        // the custom kinds from its first discovery instead of its 30 s rediscovery.
        if let Some(crd_dir) = &options.crd_dir {
            crds::install(&client, crd_dir).await?;
        }
        self.spawn(
            bin,
            "kube-controller-manager",
            &[
                format!("--kubeconfig={}", self.kubeconfig_path.display()),
                "--leader-elect=false".into(),
                "--secure-port=0".into(),
                "--use-service-account-credentials=false".into(),
                format!("--service-account-private-key-file={}", file(pki::SA_KEY)),
                format!("--root-ca-file={}", file(pki::CA_CERT)),
                // Just what a control plane without nodes needs: namespace deletion, garbage
                // collection of owned objects, service accounts and the aggregated RBAC roles.
                "--controllers=garbage-collector-controller,namespace-controller,serviceaccount-controller,\
             serviceaccount-token-controller,root-ca-certificate-publisher-controller,\
             clusterrole-aggregation-controller"
                    .into(),
            ],
        )?;

        tracing::info!(elapsed = ?started.elapsed(), server = %self.server, "test control plane ready");
        Ok(())
    }

    /// The admin kubeconfig (user `admin` in `system:masters`).
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig_path
    }

    /// A client for the admin user. Each test runtime needs its own: a client's connection
    /// pool belongs to the Tokio runtime that created it.
    pub async fn client(&self) -> anyhow::Result<Client> {
        client_for(&self.kubeconfig_path).await
    }

    /// Whether every process is still running, and which one stopped otherwise.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        for process in &mut self.processes {
            if let Some(status) = process.child.try_wait()? {
                bail!("{} exited ({status}); {}", process.name, log_tail(&process.log));
            }
        }
        Ok(())
    }

    /// Stops the processes (SIGTERM, then SIGKILL after 10 s) in reverse start order and
    /// removes the cluster's folder. Idempotent.
    pub fn stop(&mut self) {
        while let Some(mut process) = self.processes.pop() {
            terminate(&mut process.child);
        }
        if self.dir.exists() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    fn spawn(&mut self, bin: &Path, name: &'static str, args: &[String]) -> anyhow::Result<()> {
        let log = self.dir.join(format!("{name}.log"));
        let output = File::create(&log)?;
        let mut command = Command::new(bin.join(name));
        command.args(args).stdin(Stdio::null()).stdout(output.try_clone()?).stderr(output);
        // SAFETY: prctl is async-signal-safe and touches no memory of the parent. It makes the
        // kernel stop the child if this process dies without running its teardown (SIGKILL, a
        // CI timeout), so no orphaned control plane outlives a test run.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command.spawn().with_context(|| format!("starting {}", bin.join(name).display()))?;
        self.processes.push(ManagedProcess { name, child, log });
        Ok(())
    }

    fn wait_for(&mut self, name: &str, ready: impl Fn() -> anyhow::Result<bool>) -> anyhow::Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            self.check_alive()?;
            if ready().unwrap_or(false) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("{name} not ready after {READY_TIMEOUT:?}; {}", self.log_of(name));
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    async fn wait_for_async<F, Fut>(&mut self, name: &str, ready: F) -> anyhow::Result<()>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = anyhow::Result<bool>>,
    {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            self.check_alive()?;
            if ready().await.unwrap_or(false) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("{name} not ready after {READY_TIMEOUT:?}; {}", self.log_of(name));
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    fn log_of(&self, name: &str) -> String {
        self.processes.iter().find(|p| p.name == name).map(|p| log_tail(&p.log)).unwrap_or_default()
    }

    fn write_kubeconfig(&self, pki: &Pki) -> anyhow::Result<()> {
        let kubeconfig = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: kfp-test\n  cluster:\n    server: {server}\n    \
             certificate-authority-data: {ca}\nusers:\n- name: admin\n  user:\n    client-certificate-data: {cert}\n    \
             client-key-data: {key}\ncontexts:\n- name: kfp-test\n  context:\n    cluster: kfp-test\n    user: admin\n\
             current-context: kfp-test\n",
            server = self.server,
            ca = BASE64.encode(&pki.ca_cert),
            cert = BASE64.encode(&pki.admin_cert),
            key = BASE64.encode(&pki.admin_key),
        );
        std::fs::write(&self.kubeconfig_path, kubeconfig).context("writing the kubeconfig")
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A client from a kubeconfig file.
pub async fn client_for(kubeconfig_path: &Path) -> anyhow::Result<Client> {
    install_crypto_provider();
    let kubeconfig =
        Kubeconfig::read_from(kubeconfig_path).with_context(|| format!("reading {}", kubeconfig_path.display()))?;
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
    Ok(Client::try_from(config)?)
}

/// The dependency tree links two rustls crypto providers, so rustls needs to be told which to
/// use before the first TLS client is built. Repeated calls are harmless.
fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn make_cluster_dir() -> anyhow::Result<PathBuf> {
    // /dev/shm keeps etcd's writes in memory where the machine has it.
    let base = Path::new("/dev/shm");
    let base = if base.is_dir() { base.to_path_buf() } else { std::env::temp_dir() };
    let dir = base.join(format!("kfp-test-cluster-{}-{}", std::process::id(), unique_suffix()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

fn unique_suffix() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or_default()
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A plain-HTTP GET on loopback, for etcd's health endpoint (no client library needed).
fn http_get_status(port: u16, path: &str) -> anyhow::Result<u16> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response.split_whitespace().nth(1).context("empty HTTP response")?;
    Ok(status.parse()?)
}

fn terminate(child: &mut Child) {
    let pid = child.id() as libc::pid_t;
    // SAFETY: kill(2) on the pid of a child we own and have not yet reaped.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// The last lines of a component's log, for error messages.
fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(20)..].join("\n");
    format!("last lines of {}:\n{tail}", log.display())
}
