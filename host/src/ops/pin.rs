//! `wasmig pin`: record plugin artifacts' blake3 in the lock file.

use anyhow::{Context as _, Result, bail};

use super::{Settings, load_unchecked};
use crate::Exit;

/// Pins the named plugins (or all loaded ones) and writes the lock file atomically.
pub async fn pin(s: &Settings, names: &[String]) -> Result<Exit> {
    let plugins = load_unchecked(s).await?;
    for n in names {
        if !plugins.specs.iter().any(|p| &p.name == n) {
            let loaded: Vec<&str> = plugins.specs.iter().map(|p| p.name.as_str()).collect();
            bail!(
                "{}",
                crate::names::unknown_plugin(&format!("`pin {n}`"), n, &s.plugins_dir, &loaded)
            );
        }
    }
    let mut lock = s.read_lock()?.unwrap_or_default();
    for p in &plugins.specs {
        if names.is_empty() || names.contains(&p.name) {
            let old = lock
                .plugins
                .insert(p.name.clone(), p.artifact_checksum.clone());
            crate::report::notes::pinned(&p.name, old.as_deref(), &p.artifact_checksum);
        }
    }
    // Committed with the deploy config and read by reviewers: checksums, not secrets.
    crate::files::write_atomic(
        &s.lock_file,
        lock.render().as_bytes(),
        crate::files::Access::Readable,
    )
    .with_context(|| format!("cannot write `{}`", s.lock_file.display()))?;
    Ok(Exit::Ok)
}
