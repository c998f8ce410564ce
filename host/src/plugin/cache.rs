//! The compile cache: components compiled by this host, stored in the user's cache directory
//! and keyed on blake3 of (the `.wasm` bytes, the engine's compatibility hash, wasmig's
//! version). Loading a cached artifact skips Cranelift entirely (milliseconds to microseconds).
//!
//! Only files this host wrote are ever loaded: the directory is created `0700`, a file is
//! loaded only from such a directory and only if no one but its owner can write it, and it
//! is written to a temporary name and renamed, so a crash never leaves a partial artifact
//! under a real key.

use std::hash::{Hash, Hasher};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use wasmtime::Engine;
use wasmtime::component::Component;

/// Where compiled components are kept; `None` disables the cache.
#[derive(Debug, Clone)]
pub struct CompileCache {
    dir: Option<PathBuf>,
}

impl CompileCache {
    /// `WASMIG_CACHE_DIR` (empty or `off` disables), else `$XDG_CACHE_HOME/wasmig`, else
    /// `$HOME/.cache/wasmig`.
    pub fn from_env() -> Self {
        let dir = match std::env::var("WASMIG_CACHE_DIR") {
            Ok(v) if v.is_empty() || v == "off" => None,
            Ok(v) => Some(PathBuf::from(v)),
            Err(_) => std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache")))
                .map(|d| d.join("wasmig")),
        };
        CompileCache { dir }
    }

    /// The cache key of `wasm` for `engine`.
    fn key(engine: &Engine, wasm: &[u8]) -> String {
        struct Blake(blake3::Hasher);
        impl Hasher for Blake {
            fn finish(&self) -> u64 {
                0
            }
            fn write(&mut self, bytes: &[u8]) {
                self.0.update(bytes);
            }
        }
        let mut h = Blake(blake3::Hasher::new());
        engine.precompile_compatibility_hash().hash(&mut h);
        h.0.update(env!("CARGO_PKG_VERSION").as_bytes());
        h.0.update(&(wasm.len() as u64).to_le_bytes());
        h.0.update(wasm);
        h.0.finalize().to_hex().to_string()
    }

    /// The compiled component for `wasm`: from the cache when this host compiled it before,
    /// else compiled now (and stored; a cache that cannot be written is only logged).
    pub fn load(&self, engine: &Engine, wasm: &[u8]) -> wasmtime::Result<Component> {
        let Some(dir) = self.usable_dir() else {
            return Component::new(engine, wasm);
        };
        let path = dir.join(format!("{}.cwasm", Self::key(engine, wasm)));
        if owner_only(&path) {
            match deserialize(engine, &path) {
                Ok(c) => return Ok(c),
                Err(e) => tracing::debug!("ignoring cached {}: {e}", path.display()),
            }
        }
        let compiled = engine.precompile_component(wasm)?;
        if let Err(e) = store(&dir, &path, &compiled) {
            tracing::debug!("cannot write the compile cache {}: {e}", path.display());
        }
        deserialize_bytes(engine, &compiled)
    }

    fn usable_dir(&self) -> Option<PathBuf> {
        let dir = self.dir.as_ref()?;
        if std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .is_err()
        {
            return None;
        }
        let meta = std::fs::metadata(dir).ok()?;
        (meta.is_dir() && meta.permissions().mode() & 0o077 == 0).then(|| dir.clone())
    }
}

/// A regular file, owned by the directory's owner, writable by no one else.
fn owner_only(path: &Path) -> bool {
    let (Ok(meta), Some(parent)) = (std::fs::symlink_metadata(path), path.parent()) else {
        return false;
    };
    let Ok(dir) = std::fs::metadata(parent) else {
        return false;
    };
    meta.is_file() && meta.uid() == dir.uid() && meta.permissions().mode() & 0o022 == 0
}

fn store(dir: &Path, path: &Path, compiled: &[u8]) -> std::io::Result<()> {
    let tmp = dir.join(format!(".{}.tmp", std::process::id()));
    std::fs::write(&tmp, compiled)?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
    std::fs::rename(&tmp, path)
}

#[allow(unsafe_code)]
fn deserialize(engine: &Engine, path: &Path) -> wasmtime::Result<Component> {
    // SAFETY: the file was produced by `precompile_component` of an engine with the same
    // compatibility hash (it is part of the file name), written by this user into a
    // directory only this user can write (checked by `owner_only` / `usable_dir`).
    unsafe { Component::deserialize_file(engine, path) }
}

#[allow(unsafe_code)]
fn deserialize_bytes(engine: &Engine, compiled: &[u8]) -> wasmtime::Result<Component> {
    // SAFETY: `compiled` was just produced by `precompile_component` on this engine.
    unsafe { Component::deserialize(engine, compiled) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_depend_on_bytes() {
        let engine = Engine::default();
        assert_ne!(
            CompileCache::key(&engine, b"a"),
            CompileCache::key(&engine, b"b")
        );
        assert_eq!(
            CompileCache::key(&engine, b"a"),
            CompileCache::key(&engine, b"a")
        );
    }
}
