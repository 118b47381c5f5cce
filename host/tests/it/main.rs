//! Integration tests against a real control plane (etcd, kube-apiserver and
//! kube-controller-manager from `tests/cluster`), started once for this binary by
//! `kfp-test-support`; each test works in its own namespace.

mod cli;
mod crds;
mod custom_provider;
mod examples;
pub mod experiment_controller;
mod hash_vectors;
mod helm_chart;
mod hot_reload;
mod http_capability;
mod oci;
pub mod operator_process;
mod plugin_sources;
mod printer_columns;
mod provider_controller;
mod run_configuration_lifecycle;
mod sandbox;
mod status;
mod support;
mod validation;
