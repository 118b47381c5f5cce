//! `kfp-test-cluster` (`make cluster`): starts the test control plane by hand, prints how to
//! use it, and stops it on Ctrl-C.

use kfp_test_support::{ClusterOptions, TestCluster, chart_crd_dir};

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::new("info,kube_client=off")).init();
    let mut cluster = TestCluster::start(ClusterOptions { crd_dir: Some(chart_crd_dir()) }).await?;
    let kubeconfig = cluster.kubeconfig_path().display();
    println!("control plane ready; CRDs installed from {}", chart_crd_dir().display());
    println!("kubeconfig: {kubeconfig}");
    println!("export KUBECONFIG={kubeconfig}");
    println!("Ctrl-C stops it and removes its files.");
    tokio::signal::ctrl_c().await?;
    cluster.stop();
    Ok(())
}
