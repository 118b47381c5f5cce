//! Compiled plugins on local disk, so a restart does not recompile.
//!
//! Loading a precompiled blob is `unsafe`: it is native code. So the cache only ever holds
//! blobs this process compiled, in a folder only it may write (refused if group- or
//! world-writable), each file written atomically (temporary file, then rename) and sealed with
//! the SHA-256 of its contents, checked before deserializing. Entries are keyed by the
//! plugin's own SHA-256 and the engine's compatibility hash, so a new wasmtime version or
//! configuration never loads an old blob. Precompiled bytes from anywhere else (a ConfigMap, a
//! registry) are never loaded. All filesystem access goes through cap-std, confined to the
//! cache folder.

use std::{hash::Hasher, path::Path};

use cap_std::{
    ambient_authority,
    fs::{Dir, PermissionsExt},
};
use sha2::{Digest, Sha256};
use wasmtime::{Engine, component::Component};

const MAGIC: &[u8; 8] = b"KFPCWASM";
const SEAL_LEN: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("compiled-plugin cache {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error(
        "compiled-plugin cache {path} is writable by other users (mode {mode:o}); refusing to load native code from it"
    )]
    Insecure { path: String, mode: u32 },
}

/// The on-disk cache of compiled plugins.
pub struct CompiledCache {
    dir: Dir,
    path: String,
    engine_key: String,
}

impl CompiledCache {
    /// Opens (creating if needed) the cache folder for `engine`.
    pub fn open(path: &Path, engine: &Engine) -> Result<Self, CacheError> {
        let display = path.display().to_string();
        let io = |source| CacheError::Io { path: display.clone(), source };
        Dir::create_ambient_dir_all(path, ambient_authority()).map_err(io)?;
        let dir = Dir::open_ambient_dir(path, ambient_authority()).map_err(io)?;
        let mode = dir.dir_metadata().map_err(io)?.permissions().mode();
        if mode & 0o022 != 0 {
            return Err(CacheError::Insecure { path: display, mode: mode & 0o7777 });
        }
        Ok(Self { dir, path: display, engine_key: engine_key(engine) })
    }

    fn file_name(&self, sha256: &str) -> String {
        format!("{sha256}-{}.cwasm", self.engine_key)
    }

    /// The compiled component for the plugin with this SHA-256, if this process (or an
    /// earlier run of it with the same engine) cached it and the seal still matches. A broken
    /// or stale entry is removed and reported as a miss.
    pub fn load(&self, engine: &Engine, sha256: &str) -> Option<Component> {
        let name = self.file_name(sha256);
        let sealed = self.dir.read(&name).ok()?;
        let payload = match unseal(&sealed) {
            Some(payload) => payload,
            None => {
                tracing::warn!(cache = %self.path, file = %name, "corrupt compiled-plugin cache entry; recompiling");
                let _ = self.dir.remove_file(&name);
                return None;
            }
        };
        // SAFETY: the payload is a blob this process wrote with `Engine::precompile_component`
        // for an engine with the same compatibility hash, in a folder only this user can write,
        // and its seal (SHA-256 of the payload) matches, so it is unchanged since.
        match unsafe { Component::deserialize(engine, payload) } {
            Ok(component) => Some(component),
            Err(error) => {
                tracing::warn!(cache = %self.path, file = %name, %error, "unusable compiled-plugin cache entry; recompiling");
                let _ = self.dir.remove_file(&name);
                None
            }
        }
    }

    /// Stores the compiled form of a plugin whose bytes hashed to `sha256`.
    pub fn store(&self, sha256: &str, compiled: &[u8]) -> Result<(), CacheError> {
        let name = self.file_name(sha256);
        let temporary = format!(".{name}.{}.tmp", std::process::id());
        let io = |source| CacheError::Io { path: format!("{}/{name}", self.path), source };
        self.dir.write(&temporary, seal(compiled)).map_err(io)?;
        self.dir.set_permissions(&temporary, cap_std::fs::Permissions::from_mode(0o600)).map_err(io)?;
        self.dir.rename(&temporary, &self.dir, &name).map_err(io)
    }
}

fn seal(payload: &[u8]) -> Vec<u8> {
    let mut sealed = Vec::with_capacity(MAGIC.len() + SEAL_LEN + payload.len());
    sealed.extend_from_slice(MAGIC);
    sealed.extend_from_slice(&Sha256::digest(payload));
    sealed.extend_from_slice(payload);
    sealed
}

fn unseal(sealed: &[u8]) -> Option<&[u8]> {
    let rest = sealed.strip_prefix(MAGIC)?;
    if rest.len() < SEAL_LEN {
        return None;
    }
    let (seal, payload) = rest.split_at(SEAL_LEN);
    (Sha256::digest(payload).as_slice() == seal).then_some(payload)
}

/// A stable hex key for the engine's compatibility hash (wasmtime version, target and the
/// configuration settings that affect compiled code).
fn engine_key(engine: &Engine) -> String {
    struct Sha256Hasher(Sha256);
    impl Hasher for Sha256Hasher {
        fn write(&mut self, bytes: &[u8]) {
            self.0.update(bytes);
        }
        fn finish(&self) -> u64 {
            0
        }
    }
    let mut hasher = Sha256Hasher(Sha256::new());
    std::hash::Hash::hash(&engine.precompile_compatibility_hash(), &mut hasher);
    hasher.0.finalize()[..8].iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_detect_changes() {
        let sealed = seal(b"native code");
        assert_eq!(unseal(&sealed), Some(&b"native code"[..]));
        let mut tampered = sealed.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert_eq!(unseal(&tampered), None);
        assert_eq!(unseal(&sealed[..20]), None);
        assert_eq!(unseal(b"no magic here at all, just bytes"), None);
    }
}
