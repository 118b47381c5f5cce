//! The operator binary as it runs in a cluster, on the real control plane: two replicas with
//! leader election (only the leader reconciles; killing it hands over to the standby within the
//! lease duration; both serve /healthz, /readyz and /metrics), and an operator killed between a
//! plugin call and its status write. The stub provider reports every remote operation to a
//! recorder in the test, so the tests count what reached the "platform".

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    process::{Child, Command},
    time::Duration,
};

use kfp_operator::api::{Experiment, conditions::SynchronizationState};
use kfp_test_support::http_server::RecordingServer;
use kube::{Api, api::PostParams};
use serde_json::json;

use crate::support::{create_recording_provider, remote_operations, setup};

/// One `kfp-operator run` process, killed when dropped; its log goes to a file the tests show
/// when they fail.
pub struct Replica {
    child: Child,
    metrics_port: u16,
    pub probe_port: u16,
    pub log: std::path::PathBuf,
}

impl Replica {
    fn start(namespace: &str, cache: &std::path::Path, leader_elect: bool) -> Self {
        let args = [
            "run".to_owned(),
            format!("--namespace={namespace}"),
            format!("--leader-election-namespace={namespace}"),
            format!("--leader-elect={leader_elect}"),
            format!("--plugin-cache-dir={}", cache.display()),
        ];
        Self::spawn(&args, kfp_test_support::shared_kubeconfig(), &[])
    }

    /// Starts the operator with `args` (whose `--metrics-address` and `--probe-address` are
    /// replaced by free loopback ports) as the user of `kubeconfig`.
    pub fn spawn(args: &[String], kubeconfig: &std::path::Path, env: &[(&str, &str)]) -> Self {
        let free = || TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let (metrics_port, probe_port) = (free(), free());
        let args =
            args.iter().filter(|arg| !arg.starts_with("--metrics-address") && !arg.starts_with("--probe-address"));
        static COUNT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let number = COUNT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let log = std::env::temp_dir().join(format!("kfp-operator-{}-{number}.log", std::process::id()));
        let log_file = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_kfp-operator"))
            .args(args)
            .arg(format!("--metrics-address=127.0.0.1:{metrics_port}"))
            .arg(format!("--probe-address=127.0.0.1:{probe_port}"))
            .env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file)
            .spawn()
            .expect("starting kfp-operator run");
        Self { child, metrics_port, probe_port, log }
    }

    /// The end of the operator's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// The status code and body of a GET on loopback, or none while the server is not up.
    pub fn get(port: u16, path: &str) -> Option<(u16, String)> {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).ok()?;
        let status = response.split_whitespace().nth(1)?.parse().ok()?;
        Some((status, response.split_once("\r\n\r\n").map(|(_, body)| body.to_owned()).unwrap_or_default()))
    }

    /// Experiment reconciles this replica has run.
    fn experiment_reconciles(&self) -> u64 {
        let Some((_, metrics)) = Self::get(self.metrics_port, "/metrics") else { return 0 };
        metrics
            .lines()
            .filter(|line| {
                line.starts_with("kfp_operator_reconciliations_total") && line.contains(r#"controller="experiment""#)
            })
            .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    }
}

/// Killed with SIGKILL: no graceful shutdown, as when a node dies.
impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

pub async fn wait_until(what: &str, timeout: Duration, mut done: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + timeout;
    while !done().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn synchronised(api: &Api<Experiment>, name: &str) -> bool {
    api.get(name).await.unwrap().status.is_some_and(|s| s.synchronization_state() == SynchronizationState::Succeeded)
}

fn created_experiment(namespace: &str, name: &str) -> (String, String, String) {
    ("create".to_owned(), "experiment".to_owned(), format!("experiment:{namespace}/{name}"))
}

fn experiment(namespace: &str, name: &str) -> Experiment {
    serde_json::from_value(json!({
        "apiVersion": "pipelines.kubeflow.org/v1beta1", "kind": "Experiment",
        "metadata": { "name": name },
        "spec": { "provider": format!("{namespace}/stub"), "description": "d" },
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_leader_reconciles_and_a_standby_takes_over() {
    let (client, ns) = setup("failover").await;
    let recorder = RecordingServer::start();
    create_recording_provider(&client, &ns, &recorder, json!({})).await;
    let cache = std::env::temp_dir().join(format!("kfp-failover-cache-{}", std::process::id()));
    let mut replicas = vec![Replica::start(&ns, &cache.join("a"), true), Replica::start(&ns, &cache.join("b"), true)];

    // Both are healthy and ready, leader or standby.
    for replica in &replicas {
        let probe = replica.probe_port;
        wait_until("the probes", Duration::from_secs(20), async || {
            Replica::get(probe, "/healthz").is_some_and(|(code, _)| code == 200)
                && Replica::get(probe, "/readyz").is_some_and(|(code, _)| code == 200)
        })
        .await;
    }

    let experiments: Api<Experiment> = Api::namespaced(client.clone(), &ns);
    experiments.create(&PostParams::default(), &experiment(&ns, "first")).await.unwrap();
    wait_until("the first Experiment to synchronise", Duration::from_secs(30), async || {
        synchronised(&experiments, "first").await
    })
    .await;
    let counts: Vec<u64> = replicas.iter().map(Replica::experiment_reconciles).collect();
    assert_eq!(counts.iter().filter(|&&count| count > 0).count(), 1, "exactly one replica reconciles: {counts:?}");

    // Kill the leader; the standby takes over within the lease duration and reconciles.
    let leader = counts.iter().position(|&count| count > 0).unwrap();
    drop(replicas.remove(leader));
    let standby = &replicas[0];
    experiments.create(&PostParams::default(), &experiment(&ns, "second")).await.unwrap();
    wait_until("the standby to take over", Duration::from_secs(45), async || {
        synchronised(&experiments, "second").await
    })
    .await;
    assert!(standby.experiment_reconciles() > 0);
    // The new leader re-reconciled the first Experiment without touching the platform again.
    assert_eq!(
        remote_operations(&recorder),
        vec![created_experiment(&ns, "first"), created_experiment(&ns, "second")],
        "each Experiment was created remotely exactly once across the handover"
    );
    let _ = std::fs::remove_dir_all(&cache);
}

/// The operator dies after the platform performed a create and before the result reached the
/// Experiment's status. The state written before the call (`Creating`) makes the next operator
/// repeat the call with the same deterministic remote name, so the platform still holds one
/// Experiment and the status gets its id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_the_plugin_call_and_the_status_write_creates_nothing_twice() {
    let (client, ns) = setup("crash").await;
    let recorder = RecordingServer::start();
    create_recording_provider(&client, &ns, &recorder, json!({})).await;
    let cache = std::env::temp_dir().join(format!("kfp-crash-cache-{}", std::process::id()));
    recorder.hold();
    let first = Replica::start(&ns, &cache, false);

    let experiments: Api<Experiment> = Api::namespaced(client.clone(), &ns);
    experiments.create(&PostParams::default(), &experiment(&ns, "crash")).await.unwrap();
    wait_until("the create to reach the platform", Duration::from_secs(30), async || {
        !remote_operations(&recorder).is_empty()
    })
    .await;
    let state = experiments.get("crash").await.unwrap().status.map(|s| s.synchronization_state());
    assert_eq!(state, Some(SynchronizationState::Creating), "the state is written before the plugin call");
    drop(first);
    recorder.release();

    let _second = Replica::start(&ns, &cache, false);
    wait_until("the restarted operator to synchronise the Experiment", Duration::from_secs(30), async || {
        synchronised(&experiments, "crash").await
    })
    .await;
    let operations = remote_operations(&recorder);
    assert_eq!(
        operations,
        vec![created_experiment(&ns, "crash"); 2],
        "the interrupted create and its repeat, both for the same remote Experiment"
    );
    let status = experiments.get("crash").await.unwrap().status.unwrap();
    assert_eq!(status.provider.id, format!("experiment:{ns}/crash"));
    let _ = std::fs::remove_dir_all(&cache);
}
