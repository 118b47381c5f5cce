//! Test support: a real Kubernetes control plane for integration tests (the recipe is in
//! `shared/reference/test-cluster.md`). One control plane per test binary, shared by its tests,
//! each of which works in its own namespace.

pub mod binaries;
mod cluster;
mod crds;
pub mod http_server;
pub mod oci_registry;
mod pki;
pub mod plugins;

use std::{
    path::{Path, PathBuf},
    sync::{Mutex, OnceLock, mpsc},
};

use anyhow::Context;
pub use cluster::{ClusterOptions, TestCluster, client_for};
use k8s_openapi::api::core::v1::Namespace;
use kube::{Api, Client, api::PostParams};

/// The repository's root folder: the first folder holding `tests/cluster/build.sh` above the
/// package cargo is running (set at run time) or the working directory, and only then where this
/// crate was compiled. With one target folder shared between clones, cargo may reuse a build from
/// another clone, so the compile-time path alone could point at a clone that no longer exists.
pub fn repo_root() -> PathBuf {
    let compiled = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let candidates =
        std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from).into_iter().chain(std::env::current_dir().ok());
    candidates
        .chain([compiled.clone()])
        .find_map(|start| {
            start.ancestors().find(|dir| dir.join("tests/cluster/build.sh").is_file()).map(Path::to_path_buf)
        })
        .unwrap_or_else(|| compiled.join("../.."))
}

/// The CRDs the Helm chart ships, which the shared control plane installs.
pub fn chart_crd_dir() -> PathBuf {
    repo_root().join("charts/kfp-operator/crds")
}

static SHARED: OnceLock<Result<PathBuf, String>> = OnceLock::new();
static SHARED_CLUSTER: Mutex<Option<TestCluster>> = Mutex::new(None);

/// The kubeconfig of this process's control plane, started (with the chart's CRDs) on first
/// use. Panics with the cause, including what to install, if it cannot start.
pub fn shared_kubeconfig() -> &'static Path {
    let started = SHARED.get_or_init(|| {
        let (ready_tx, ready_rx) = mpsc::channel();
        // The processes are spawned from a thread that lives as long as the test process, because
        // their parent-death signal fires when the spawning *thread* exits.
        std::thread::Builder::new()
            .name("test-control-plane".into())
            .spawn(move || {
                let started = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(anyhow::Error::from)
                    .and_then(|runtime| {
                        runtime.block_on(TestCluster::start(ClusterOptions { crd_dir: Some(chart_crd_dir()) }))
                    });
                let reply = started.map(|cluster| {
                    let kubeconfig = cluster.kubeconfig_path().to_owned();
                    *SHARED_CLUSTER.lock().unwrap_or_else(|e| e.into_inner()) = Some(cluster);
                    // SAFETY: registers a plain `extern "C"` function; the libtest harness exits
                    // through `exit(3)`, which runs it after the last test.
                    unsafe { libc::atexit(stop_shared_cluster) };
                    kubeconfig
                });
                let _ = ready_tx.send(reply.map_err(|e| format!("{e:#}")));
                loop {
                    std::thread::park();
                }
            })
            .map_err(|e| e.to_string())?;
        ready_rx.recv().map_err(|e| e.to_string())?
    });
    match started {
        Ok(path) => path,
        Err(cause) => panic!("the test control plane could not start: {cause}"),
    }
}

extern "C" fn stop_shared_cluster() {
    if let Some(mut cluster) = SHARED_CLUSTER.lock().unwrap_or_else(|e| e.into_inner()).take() {
        cluster.stop();
    }
}

/// A client of the shared control plane for the calling test's runtime.
pub async fn shared_client() -> Client {
    client_for(shared_kubeconfig()).await.expect("a client for the test control plane")
}

/// Creates a fresh namespace `it-<prefix>-<random>` for one test.
pub async fn test_namespace(client: &Client, prefix: &str) -> anyhow::Result<String> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let mut namespace = Namespace::default();
    namespace.metadata.generate_name = Some(format!("it-{prefix}-"));
    let created = namespaces.create(&PostParams::default(), &namespace).await.context("creating a test namespace")?;
    created.metadata.name.context("namespace without a name")
}
