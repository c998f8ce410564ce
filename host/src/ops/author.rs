//! The plugin author's commands that need no database: `plugin inspect` (what a component
//! declares, as the host reads it) and `plugin check` (every manifest of a directory and
//! their ordering, for a plugin repository's own CI). `new` and `build` are in `scaffold`.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};

use crate::Exit;
use crate::plan::PluginSpec;
use crate::plugin::{Limits, LoadedPlugin, Runtime};
use crate::report::{self, Output};

/// What the offline commands take from the settings: no database.
#[derive(Debug, Clone)]
pub struct Offline {
    /// Plugins directory (`--plugins`, `WASMIG_PLUGINS`, `plugins` in the config file).
    pub plugins_dir: PathBuf,
    /// Limits a manifest call runs with.
    pub limits: Limits,
}

fn runtime(o: &Offline) -> Result<Runtime> {
    Runtime::new(o.limits.clone())
        .map_err(|e| anyhow::anyhow!("{e:#}"))
        .context("starting the WebAssembly engine")
}

/// What `plugin inspect` reports of one component.
pub struct Inspected {
    /// The validated manifest (with the artifact's blake3).
    pub spec: PluginSpec,
    /// The component file.
    pub path: PathBuf,
    /// Its size in bytes.
    pub size: u64,
    /// The WIT version it was built for.
    pub wit_version: &'static str,
    /// What it imports.
    pub imports: Vec<String>,
    /// The name of the file when it is not `<plugin name>.wasm` (the CLI wants the plugin
    /// name).
    pub file_stem: Option<String>,
}

impl Inspected {
    fn new(p: LoadedPlugin) -> Self {
        let stem = p
            .path
            .file_stem()
            .and_then(|s| s.to_str())
            .map(str::to_owned)
            .filter(|stem| *stem != p.spec.name);
        Inspected {
            wit_version: p.pre.version(),
            spec: p.spec,
            path: p.path,
            size: p.size,
            imports: p.imports,
            file_stem: stem,
        }
    }
}

/// `wasmig plugin inspect FILE`: loads one component (no database) and prints what it
/// declares; a file that is not a valid plugin is an error naming what is wrong.
pub async fn inspect(o: &Offline, file: &Path, output: Output) -> Result<Exit> {
    let rt = runtime(o)?;
    let loaded = rt.load_file(file).await?;
    report::print_inspected(&Inspected::new(loaded), output);
    Ok(Exit::Ok)
}

/// One component file's result in `plugin check`.
pub enum Checked {
    /// Loaded and valid on its own.
    Valid(Inspected),
    /// Refused, with why.
    Invalid {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// `wasmig plugin check [DIR]`: every component of the directory loaded and validated on its
/// own (all problems, not the first), then the set: names declared twice, requirements that
/// are missing, cyclic or impossible. Exit 0 all valid, 1 problems, 2 no directory or no
/// component.
pub async fn check(o: &Offline, dir: Option<&Path>, output: Output) -> Result<Exit> {
    let dir = dir.unwrap_or(&o.plugins_dir);
    let files = crate::plugin::load::list_dir(dir)?;
    let rt = runtime(o)?;
    let mut checked = Vec::with_capacity(files.len());
    for f in files {
        checked.push(match rt.load_file(&f).await {
            Ok(p) => Checked::Valid(Inspected::new(p)),
            Err(e) => Checked::Invalid {
                path: f,
                reason: e.to_string(),
            },
        });
    }
    let valid: Vec<&Inspected> = checked
        .iter()
        .filter_map(|c| match c {
            Checked::Valid(i) => Some(i),
            Checked::Invalid { .. } => None,
        })
        .collect();
    let mut set_problems = Vec::new();
    for (i, a) in valid.iter().enumerate() {
        if let Some(b) = valid[i + 1..].iter().find(|b| b.spec.name == a.spec.name) {
            set_problems.push(
                crate::plan::PlanError::DuplicatePlugin {
                    name: a.spec.name.clone(),
                    first: a.path.display().to_string(),
                    second: b.path.display().to_string(),
                }
                .to_string(),
            );
        }
    }
    if set_problems.is_empty() {
        let specs: Vec<PluginSpec> = valid.iter().map(|i| i.spec.clone()).collect();
        if let Err(e) = crate::plan::order_plugins(&specs) {
            set_problems.push(e.to_string());
        }
    }
    let ok = report::print_checked(dir, &checked, &set_problems, output);
    Ok(if ok { Exit::Ok } else { Exit::Problems })
}
