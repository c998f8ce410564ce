//! Loading plugin components from a directory: file checks, compilation, WIT version check,
//! pre-linking, and manifest validation into a `PluginSpec`.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use thiserror::Error;
use wasmtime::component::{Component, types::ComponentItem};

use super::bindings::exports::wasmig::plugin0_1_0::plugin as wit;
use super::{PluginPre, Runtime, SUPPORTED_WIT_VERSIONS};
use crate::names::{check_plugin_name, check_step_id};
use crate::plan::{Kind, PluginSpec, Scope, StepSpec, step_checksum};

/// Why a plugin file was refused. Every variant names the file.
#[derive(Debug, Error)]
pub enum LoadError {
    /// The plugins directory is missing or unreadable.
    #[error(
        "cannot read plugins directory `{dir}`: {reason}; build plugins into it with `wasmig build`, or point --plugins / WASMIG_PLUGINS / `plugins` in wasmig.toml at the directory holding your components"
    )]
    Dir {
        /// Directory.
        dir: PathBuf,
        /// OS error.
        reason: String,
    },
    /// No `.wasm` files.
    #[error(
        "no plugins (*.wasm) in `{0}`; build them into it with `wasmig build`, or pass --plugins DIR"
    )]
    NoPlugins(PathBuf),
    /// Not a regular file, or unreadable.
    #[error("plugin `{path}`: {reason}")]
    File {
        /// File.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Bytes that are not WebAssembly.
    #[error("plugin `{path}` is not a WebAssembly file ({reason})")]
    NotWasm {
        /// File.
        path: PathBuf,
        /// Detail.
        reason: String,
    },
    /// A core module, not a component.
    #[error(
        "plugin `{0}` is a core WebAssembly module, not a component; build it for the wasm32-wasip2 target with the wasmig SDK"
    )]
    CoreModule(PathBuf),
    /// Compilation failed.
    #[error("plugin `{path}` failed to compile: {reason}")]
    Compile {
        /// File.
        path: PathBuf,
        /// Compiler message.
        reason: String,
    },
    /// Built for a WIT version this host does not support.
    #[error("plugin `{path}` was built for wasmig:plugin@{found}; this wasmig supports {}: rebuild the plugin with a matching wasmig-sdk or upgrade wasmig", SUPPORTED_WIT_VERSIONS.join(", "))]
    WitVersion {
        /// File.
        path: PathBuf,
        /// Version the plugin targets.
        found: String,
    },
    /// Not a wasmig plugin at all.
    #[error(
        "plugin `{path}` is a component but not a wasmig plugin (it does not export `wasmig:plugin/plugin`; exports: {exports})"
    )]
    NotAPlugin {
        /// File.
        path: PathBuf,
        /// What it exports.
        exports: String,
    },
    /// Linking or calling `manifest` failed.
    #[error("plugin `{path}`: {reason}")]
    Instantiate {
        /// File.
        path: PathBuf,
        /// Detail.
        reason: String,
    },
    /// The manifest breaks a rule.
    #[error("plugin `{path}` has an invalid manifest: {reason}")]
    Manifest {
        /// File.
        path: PathBuf,
        /// The rule broken.
        reason: String,
    },
}

/// A loaded, validated plugin ready to instantiate per step.
pub struct LoadedPlugin {
    /// Validated manifest.
    pub spec: PluginSpec,
    /// Where it came from.
    pub path: PathBuf,
    /// Pre-linked instance, for the WIT version the plugin was built for.
    pub pre: PluginPre,
    /// What the component imports (interface names), for `plugin inspect`.
    pub imports: Vec<String>,
    /// The file's size in bytes.
    pub size: u64,
}

/// The `.wasm` files of a directory, sorted.
pub fn list_dir(dir: &Path) -> Result<Vec<PathBuf>, LoadError> {
    let rd = std::fs::read_dir(dir).map_err(|e| LoadError::Dir {
        dir: dir.to_owned(),
        reason: e.to_string(),
    })?;
    let mut files: Vec<PathBuf> = rd
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "wasm"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(LoadError::NoPlugins(dir.to_owned()));
    }
    Ok(files)
}

const WASM_MAGIC: &[u8] = b"\0asm";

impl Runtime {
    /// Loads every `.wasm` in `dir`; the first bad file stops loading (nothing runs with an
    /// incomplete set of plugins).
    pub async fn load_dir(&self, dir: &Path) -> Result<Vec<LoadedPlugin>, LoadError> {
        let files = list_dir(dir)?;
        let mut out = Vec::with_capacity(files.len());
        for f in files {
            out.push(self.load_file(&f).await?);
        }
        Ok(out)
    }

    /// Loads and validates one component file.
    pub async fn load_file(&self, path: &Path) -> Result<LoadedPlugin, LoadError> {
        let file_err = |reason: String| LoadError::File {
            path: path.to_owned(),
            reason,
        };
        let meta = std::fs::metadata(path).map_err(|e| file_err(e.to_string()))?;
        if !meta.is_file() {
            return Err(file_err("not a regular file".into()));
        }
        let bytes = std::fs::read(path).map_err(|e| file_err(e.to_string()))?;
        if bytes.is_empty() {
            return Err(file_err("the file is empty".into()));
        }
        if bytes.len() < 8 || &bytes[..4] != WASM_MAGIC {
            return Err(LoadError::NotWasm {
                path: path.to_owned(),
                reason: "it does not start with the `\\0asm` magic bytes".into(),
            });
        }
        if bytes[4..8] == [1, 0, 0, 0] {
            return Err(LoadError::CoreModule(path.to_owned()));
        }
        let artifact_checksum = blake3::hash(&bytes).to_hex().to_string();
        let size = bytes.len() as u64;
        let (engine, cache) = (self.engine.clone(), self.cache.clone());
        let component = tokio::task::spawn_blocking(move || cache.load(&engine, &bytes))
            .await
            .map_err(|e| file_err(e.to_string()))?
            .map_err(|e| LoadError::Compile {
                path: path.to_owned(),
                reason: format!("{e:#}"),
            })?;
        let version = self.check_world(path, &component)?;
        let imports = component
            .component_type()
            .imports(&self.engine)
            .map(|(name, _)| name.to_owned())
            .collect();
        let pre = PluginPre::new(&self.linker, &component, version).map_err(|e| {
            LoadError::Instantiate {
                path: path.to_owned(),
                reason: format!("cannot link: {e:#}"),
            }
        })?;
        let mut store = self.store(format!("{}", path.display()), None, &self.limits);
        let (manifest, declared) =
            pre.manifest(&mut store)
                .await
                .map_err(|e| LoadError::Instantiate {
                    path: path.to_owned(),
                    reason: format!(
                        "calling `manifest` failed: {}",
                        store.data().describe_failure(&e, &self.limits)
                    ),
                })?;
        let spec = validate_manifest(manifest, declared, artifact_checksum).map_err(|reason| {
            LoadError::Manifest {
                path: path.to_owned(),
                reason,
            }
        })?;
        Ok(LoadedPlugin {
            spec,
            path: path.to_owned(),
            pre,
            imports,
            size,
        })
    }

    /// Checks that the component is a wasmig plugin of a version this host serves, and
    /// returns the version of its `plugin` export.
    fn check_world(&self, path: &Path, component: &Component) -> Result<&'static str, LoadError> {
        let ty = component.component_type();
        let mut names = Vec::new();
        let mut found_versions = Vec::new();
        let interfaces = ty
            .exports(&self.engine)
            .map(|(n, i)| (n.to_owned(), i, true))
            .chain(
                ty.imports(&self.engine)
                    .map(|(n, i)| (n.to_owned(), i, false)),
            );
        let mut exports_plugin = None;
        for (name, item, is_export) in interfaces {
            if is_export && matches!(item.ty, ComponentItem::ComponentInstance(_)) {
                names.push(name.clone());
            }
            if let Some(rest) = name.strip_prefix("wasmig:plugin/") {
                let (iface, version) = rest.split_once('@').unwrap_or((rest, ""));
                let supported = SUPPORTED_WIT_VERSIONS.iter().find(|v| **v == version);
                if supported.is_none() {
                    found_versions.push(if version.is_empty() {
                        "(unversioned)".to_owned()
                    } else {
                        version.to_owned()
                    });
                } else if is_export && iface == "plugin" {
                    exports_plugin = supported.copied();
                }
            }
        }
        if let Some(found) = found_versions.into_iter().next() {
            return Err(LoadError::WitVersion {
                path: path.to_owned(),
                found,
            });
        }
        let Some(version) = exports_plugin else {
            return Err(LoadError::NotAPlugin {
                path: path.to_owned(),
                exports: if names.is_empty() {
                    "none".into()
                } else {
                    names.join(", ")
                },
            });
        };
        Ok(version)
    }
}

/// The longest step description a manifest may declare.
pub const MAX_DESCRIPTION_CHARS: usize = 300;

/// The longest SQL text a step may declare (the step's own text, kept by the host).
pub const MAX_STEP_SQL_BYTES: usize = 4 << 20;

/// The most SQL text all steps of one plugin keep (`wasmig diff`); later steps keep none.
pub const MAX_PLUGIN_SQL_BYTES: usize = 16 << 20;

/// The most earlier fingerprints a step may list.
pub const MAX_ACCEPTED_FINGERPRINTS: usize = 8;

/// One step's own rules; `extra` is what a 0.3.0 manifest adds.
fn validate_step(
    plugin: &str,
    kind: Kind,
    s: wit::Step,
    extra: Option<super::wit::StepDeclared>,
) -> Result<StepSpec, String> {
    check_step_id(&s.id).map_err(|e| format!("plugin `{plugin}`: {e}"))?;
    let at = |what: String| format!("plugin `{plugin}` step `{}`: {what}", s.id);
    crate::text::check_manifest_text(&s.description, MAX_DESCRIPTION_CHARS)
        .map_err(|e| at(format!("its description {e}; fix the manifest")))?;
    crate::text::check_manifest_text(&s.fingerprint, 200)
        .map_err(|e| at(format!("its fingerprint {e}")))?;
    if s.fingerprint.is_empty() {
        return Err(at("it has an empty fingerprint".into()));
    }
    // Before 0.3.0 a manifest cannot say whether a step can be undone.
    let says = extra.is_some();
    let extra = extra.unwrap_or_default();
    if extra.accepts.len() > MAX_ACCEPTED_FINGERPRINTS {
        return Err(at(format!(
            "it lists {} earlier fingerprints; at most {MAX_ACCEPTED_FINGERPRINTS}",
            extra.accepts.len()
        )));
    }
    for f in &extra.accepts {
        crate::text::check_manifest_text(f, 200)
            .map_err(|e| at(format!("an earlier fingerprint {e}")))?;
    }
    if extra
        .sql
        .as_ref()
        .is_some_and(|t| t.len() > MAX_STEP_SQL_BYTES)
    {
        return Err(at(format!(
            "its SQL text is over {} MiB; split it into several steps",
            MAX_STEP_SQL_BYTES >> 20
        )));
    }
    if extra.sql.as_ref().is_some_and(|t| t.contains('\0')) {
        return Err(at(
            "its SQL text contains a NUL byte, which PostgreSQL cannot take; remove it".into(),
        ));
    }
    // The text is kept (and shown by `wasmig diff`) only when the fingerprint covers it, so
    // a plugin cannot declare one text and be recorded for another.
    let sql = extra
        .sql
        .clone()
        .filter(|t| crate::plan::sql_fingerprint(t) == s.fingerprint);
    if extra.repeatable && kind != Kind::Seed {
        return Err(at(
            "it is marked repeatable, which only seed steps may be (a migration step that changed is drift)"
                .into(),
        ));
    }
    if extra.repeatable && !s.transactional {
        return Err(at(
            "it is marked repeatable and non-transactional; a repeatable step re-runs in its own transaction"
                .into(),
        ));
    }
    Ok(StepSpec {
        checksum: step_checksum(plugin, &s.id, &s.fingerprint),
        accepts: extra
            .accepts
            .iter()
            .map(|f| step_checksum(plugin, &s.id, f))
            .collect(),
        reversible: says.then_some(extra.reversible),
        repeatable: extra.repeatable,
        sql,
        id: s.id,
        description: s.description,
        fingerprint: s.fingerprint,
        transactional: s.transactional,
    })
}

/// Checks a manifest's own rules (cross-plugin rules live in `plan::order_plugins`).
/// `declared` is what a manifest of a version after 0.1.0 says beside 0.1.0's record.
pub fn validate_manifest(
    m: wit::PluginInfo,
    declared: super::wit::Declared,
    artifact_checksum: String,
) -> Result<PluginSpec, String> {
    check_plugin_name(&m.name).map_err(|e| e.to_string())?;
    if m.version.is_empty() || m.version.len() > 64 {
        return Err(format!(
            "plugin `{}` has an empty or over-long version",
            m.name
        ));
    }
    crate::text::check_manifest_text(&m.version, 64)
        .map_err(|e| format!("plugin `{}`: its version {e}", m.name))?;
    let mut seen_req = HashSet::new();
    for r in &m.requires {
        check_plugin_name(r).map_err(|e| format!("`requires` entry: {e}"))?;
        if *r == m.name {
            return Err(format!("plugin `{}` requires itself", m.name));
        }
        if !seen_req.insert(r) {
            return Err(format!(
                "plugin `{}` lists `{r}` twice in `requires`",
                m.name
            ));
        }
    }
    if m.steps.is_empty() {
        return Err(format!("plugin `{}` declares no steps", m.name));
    }
    let extras = match declared.steps {
        Some(e) if e.len() != m.steps.len() => {
            return Err(format!(
                "plugin `{}`: its manifest describes {} steps in one list and {} in the other",
                m.name,
                m.steps.len(),
                e.len()
            ));
        }
        Some(e) => e.into_iter().map(Some).collect(),
        None => vec![None; m.steps.len()],
    };
    let kind = match m.kind {
        wit::Kind::Migration => Kind::Migration,
        wit::Kind::Seed => Kind::Seed,
    };
    let mut seen = HashSet::new();
    let mut steps = Vec::with_capacity(m.steps.len());
    for (s, extra) in m.steps.into_iter().zip(extras) {
        if !seen.insert(s.id.clone()) {
            return Err(format!(
                "plugin `{}` declares step `{}` twice; step ids must be unique",
                m.name, s.id
            ));
        }
        steps.push(validate_step(&m.name, kind, s, extra)?);
    }
    // The texts a plugin may have kept, in all: past this, later steps keep none (their diff
    // says the text is not on record), so no manifest can fill the control schema.
    let mut kept = 0usize;
    for st in &mut steps {
        kept += st.sql.as_ref().map_or(0, String::len);
        if kept > MAX_PLUGIN_SQL_BYTES {
            st.sql = None;
        }
    }
    Ok(PluginSpec {
        name: m.name,
        version: m.version,
        kind,
        scope: match m.scope {
            wit::Scope::Shared => Scope::Shared,
            wit::Scope::Tenant => Scope::Tenant,
        },
        needs: declared.needs,
        requires: m.requires,
        steps,
        artifact_checksum,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(steps: &[&str]) -> wit::PluginInfo {
        wit::PluginInfo {
            name: "notes".into(),
            version: "1.0.0".into(),
            kind: wit::Kind::Migration,
            scope: wit::Scope::Tenant,
            requires: vec![],
            steps: steps
                .iter()
                .map(|id| wit::Step {
                    id: (*id).into(),
                    description: String::new(),
                    fingerprint: format!("sql:{id}"),
                    transactional: true,
                })
                .collect(),
        }
    }

    #[test]
    fn manifest_rules() {
        assert!(
            validate_manifest(manifest(&["a", "b"]), Default::default(), String::new()).is_ok()
        );
        let e = validate_manifest(manifest(&["a", "a"]), Default::default(), String::new())
            .unwrap_err();
        assert!(e.contains("step `a` twice"), "{e}");
        assert!(
            validate_manifest(manifest(&[""]), Default::default(), String::new())
                .unwrap_err()
                .contains("empty")
        );
        assert!(
            validate_manifest(
                manifest(&[&"x".repeat(200)]),
                Default::default(),
                String::new()
            )
            .is_err()
        );
        assert!(validate_manifest(manifest(&[]), Default::default(), String::new()).is_err());
        let mut m = manifest(&["a"]);
        m.requires = vec!["notes".into()];
        assert!(
            validate_manifest(m, Default::default(), String::new())
                .unwrap_err()
                .contains("requires itself")
        );
    }
}

#[cfg(test)]
mod declared_tests {
    use super::*;
    use crate::plan::Tier;
    use crate::plugin::wit::{Declared, StepDeclared};

    fn one_step(kind: wit::Kind, transactional: bool, fingerprint: &str) -> wit::PluginInfo {
        wit::PluginInfo {
            name: "units".into(),
            version: "1".into(),
            kind,
            scope: wit::Scope::Tenant,
            requires: vec![],
            steps: vec![wit::Step {
                id: "0001_units".into(),
                description: String::new(),
                fingerprint: fingerprint.into(),
                transactional,
            }],
        }
    }

    fn declared(step: StepDeclared) -> Declared {
        Declared {
            needs: Some(Tier::Data),
            steps: Some(vec![step]),
        }
    }

    fn check(info: wit::PluginInfo, step: StepDeclared) -> Result<PluginSpec, String> {
        validate_manifest(info, declared(step), String::new())
    }

    #[test]
    fn repeatable_is_for_transactional_seed_steps_only() {
        let repeatable = || StepDeclared {
            repeatable: true,
            ..StepDeclared::default()
        };
        let seed = check(one_step(wit::Kind::Seed, true, "code:x"), repeatable()).unwrap();
        assert!(seed.steps[0].repeatable);
        let e = check(one_step(wit::Kind::Migration, true, "code:x"), repeatable()).unwrap_err();
        assert!(e.contains("only seed steps may be"), "{e}");
        let e = check(one_step(wit::Kind::Seed, false, "code:x"), repeatable()).unwrap_err();
        assert!(e.contains("re-runs in its own transaction"), "{e}");
    }

    #[test]
    fn earlier_fingerprints_are_bounded_and_become_checksums_of_this_step() {
        let accepts = |n: usize| StepDeclared {
            accepts: (0..n).map(|i| format!("code:{i}")).collect(),
            ..StepDeclared::default()
        };
        let spec = check(one_step(wit::Kind::Seed, true, "code:x"), accepts(2)).unwrap();
        assert_eq!(
            spec.steps[0].accepts,
            [
                step_checksum("units", "0001_units", "code:0"),
                step_checksum("units", "0001_units", "code:1")
            ]
        );
        let e = check(one_step(wit::Kind::Seed, true, "code:x"), accepts(9)).unwrap_err();
        assert!(e.contains("at most 8"), "{e}");
    }

    #[test]
    fn a_sql_text_is_kept_only_when_the_fingerprint_covers_it() {
        let text = "CREATE TABLE unit (code text PRIMARY KEY);\n";
        let with = |sql: &str| StepDeclared {
            sql: Some(sql.into()),
            ..StepDeclared::default()
        };
        let fp = crate::plan::sql_fingerprint(text);
        let kept = check(one_step(wit::Kind::Migration, true, &fp), with(text)).unwrap();
        assert_eq!(kept.steps[0].sql.as_deref(), Some(text));
        // Another text than the fingerprint covers: not kept, so never shown as applied.
        let other = check(
            one_step(wit::Kind::Migration, true, &fp),
            with("DROP TABLE x;"),
        )
        .unwrap();
        assert_eq!(other.steps[0].sql, None);
        let e = check(
            one_step(wit::Kind::Migration, true, &fp),
            with("SELECT 1;\0"),
        )
        .unwrap_err();
        assert!(e.contains("NUL byte"), "{e}");
        let huge = "x".repeat(MAX_STEP_SQL_BYTES + 1);
        let e = check(one_step(wit::Kind::Migration, true, &fp), with(&huge)).unwrap_err();
        assert!(e.contains("split it into several steps"), "{e}");
        // Before 0.3.0 nothing is said of reversibility; from 0.3.0 it is.
        let old = validate_manifest(
            one_step(wit::Kind::Migration, true, &fp),
            Declared::default(),
            String::new(),
        )
        .unwrap();
        assert_eq!(old.steps[0].reversible, None);
        assert_eq!(kept.steps[0].reversible, Some(false));
    }

    #[test]
    fn a_plugin_keeps_at_most_its_budget_of_sql_text() {
        // Five steps of 4 MiB each: the first four fit the 16 MiB budget, the fifth keeps none.
        let texts: Vec<String> = (0..5)
            .map(|i| format!("-- {i}\n{}", "x".repeat(MAX_STEP_SQL_BYTES - 16)))
            .collect();
        let mut info = one_step(wit::Kind::Migration, true, "");
        info.steps = texts
            .iter()
            .enumerate()
            .map(|(i, t)| wit::Step {
                id: format!("000{i}_big"),
                description: String::new(),
                fingerprint: crate::plan::sql_fingerprint(t),
                transactional: true,
            })
            .collect();
        let steps = texts
            .iter()
            .map(|t| StepDeclared {
                sql: Some(t.clone()),
                ..StepDeclared::default()
            })
            .collect();
        let spec = validate_manifest(
            info,
            Declared {
                needs: None,
                steps: Some(steps),
            },
            String::new(),
        )
        .unwrap();
        let kept: Vec<bool> = spec.steps.iter().map(|s| s.sql.is_some()).collect();
        assert_eq!(kept, [true, true, true, true, false]);
    }
}
