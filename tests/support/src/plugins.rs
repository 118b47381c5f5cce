//! The WebAssembly plugins and test fixtures, built from source (`plugins/`) for
//! wasm32-wasip2 into a target folder outside the repository.

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::OnceLock,
};

use anyhow::{Context, bail};

/// Builds every plugin (release) once per test process and returns the folder holding the
/// `.wasm` files (`stub_provider.wasm`, `stub_compiler.wasm`, `hostile_provider.wasm`).
pub fn build() -> PathBuf {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match BUILT.get_or_init(|| run_build().map_err(|e| format!("{e:#}"))) {
        Ok(dir) => dir.clone(),
        Err(cause) => panic!("building the plugins failed: {cause}"),
    }
}

/// The bytes of one built plugin, e.g. `stub_provider`.
pub fn bytes(name: &str) -> Vec<u8> {
    let path = build().join(format!("{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn run_build() -> anyhow::Result<PathBuf> {
    let target_dir = std::env::var_os("KFP_PLUGINS_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| {
        let cache = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
            .unwrap_or_else(std::env::temp_dir);
        cache.join("kfp-operator/plugins-target")
    });
    build_wasm_workspace(&crate::repo_root().join("plugins"), &target_dir)
}

/// Builds the Cargo workspace in `workspace` (release, wasm32-wasip2 from its
/// `.cargo/config.toml`) into `target_dir`; returns the folder with the `.wasm` files.
pub fn build_wasm_workspace(workspace: &Path, target_dir: &Path) -> anyhow::Result<PathBuf> {
    let output = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .args(["build", "--release", "--locked"])
        .current_dir(workspace)
        .env("CARGO_TARGET_DIR", target_dir)
        // The host build's flags (e.g. a host linker) do not apply to wasm32-wasip2.
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .output()
        .with_context(|| format!("running cargo build in {}", workspace.display()))?;
    if !output.status.success() {
        bail!(
            "{}\nThe plugins build for wasm32-wasip2: install the target with `rustup target add wasm32-wasip2` \
             (`make test` does this).",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(target_dir.join("wasm32-wasip2/release"))
}
