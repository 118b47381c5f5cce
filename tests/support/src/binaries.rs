//! The control-plane binaries, built from Go modules by `tests/cluster/build.sh` and cached
//! outside the repository.

use std::{path::PathBuf, process::Command, sync::OnceLock};

use anyhow::{Context, bail};

/// The folder with kube-apiserver, kube-controller-manager, etcd and helm. `KFP_CLUSTER_BIN`
/// points at a ready folder; otherwise the build script is run (a no-op when cached, tens of
/// minutes when cold).
pub fn ensure() -> anyhow::Result<PathBuf> {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BIN.get_or_init(|| locate().map_err(|e| format!("{e:#}"))).clone().map_err(anyhow::Error::msg)
}

fn locate() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("KFP_CLUSTER_BIN") {
        let dir = PathBuf::from(dir);
        for name in ["kube-apiserver", "kube-controller-manager", "etcd"] {
            if !dir.join(name).is_file() {
                bail!("KFP_CLUSTER_BIN={} has no {name}: run tests/cluster/build.sh or unset it", dir.display());
            }
        }
        return Ok(dir);
    }
    let script = crate::repo_root().join("tests/cluster/build.sh");
    let output = Command::new("bash").arg(&script).output().with_context(|| format!("running {}", script.display()))?;
    if !output.status.success() {
        bail!(
            "building the test control plane failed ({}):\n{}\nThe integration tests need Go >= 1.26 and the Go \
             module proxy; `make test` installs what it can. Install Go (e.g. `apt-get install golang`) and re-run.",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let dir = String::from_utf8(output.stdout)?.trim().to_owned();
    Ok(PathBuf::from(dir))
}
