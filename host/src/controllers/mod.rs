//! The controllers. Each reconciles one kind; they share one [`Context`].

pub mod provider;

use std::sync::Arc;

use kube::{
    Client,
    runtime::events::{Recorder, Reporter},
};

use crate::plugins::PluginRegistry;

/// What every reconcile needs: the API client, the loaded plugins and the Event recorder.
pub struct Context {
    pub client: Client,
    pub plugins: Arc<PluginRegistry>,
    pub recorder: Recorder,
}

impl Context {
    pub fn new(client: Client, plugins: Arc<PluginRegistry>) -> Self {
        // Events are recorded as `kfp-operator`, as upstream's recorder name.
        let reporter = Reporter { controller: "kfp-operator".into(), instance: std::env::var("HOSTNAME").ok() };
        Self { recorder: Recorder::new(client.clone(), reporter), client, plugins }
    }
}
