//! The WIT versions this host serves, side by side: the generated bindings of each, and
//! [`PluginPre`], which calls a pre-linked plugin of any of them through one interface.
//!
//! `wasmig:plugin@0.2.0` and `0.3.0` reuse 0.1.0's values, `sql` and `log` as they are (their
//! plugins import them), so the capability is implemented once; only the exported `plugin`
//! interface differs. A 0.2.0 manifest declares the tier it needs; a 0.1.0 one cannot, so
//! its plugin runs with what the operator granted, as before. A 0.3.0 manifest also says,
//! per step, whether it can be undone, whether it is a repeatable seed, which earlier
//! fingerprints mean the same content, and its SQL text; older ones cannot, so for them a
//! revert finds out step by step and a changed step is drift.

use wasmtime::Store;

use super::StepCtx;
use crate::plan::Tier;

/// Host bindings for `wasmig:plugin@0.1.0`: the values, `sql` and `log` (shared by every
/// version) and the 0.1.0 `plugin` export.
#[allow(missing_docs)]
pub mod v0_1 {
    wasmtime::component::bindgen!({
        path: "../guest-sdk/wit",
        world: "wasmig:plugin/migration-plugin@0.1.0",
        imports: { default: async | trappable },
        exports: { default: async },
    });
}

/// Host bindings for the `plugin` export of `wasmig:plugin@0.2.0`; its imports are 0.1.0's.
#[allow(missing_docs)]
pub mod v0_2 {
    wasmtime::component::bindgen!({
        path: "../guest-sdk/wit",
        world: "wasmig:plugin/migration-plugin@0.2.0",
        imports: { default: async | trappable },
        exports: { default: async },
        with: {
            "wasmig:plugin/types@0.1.0": crate::plugin::wit::v0_1::wasmig::plugin0_1_0::types,
            "wasmig:plugin/sql@0.1.0": crate::plugin::wit::v0_1::wasmig::plugin0_1_0::sql,
            "wasmig:plugin/log@0.1.0": crate::plugin::wit::v0_1::wasmig::plugin0_1_0::log,
        },
    });
}

/// Host bindings for the `plugin` export of `wasmig:plugin@0.3.0`; its imports are 0.1.0's.
#[allow(missing_docs)]
pub mod v0_3 {
    wasmtime::component::bindgen!({
        path: "../guest-sdk/wit",
        world: "wasmig:plugin/migration-plugin@0.3.0",
        imports: { default: async | trappable },
        exports: { default: async },
        with: {
            "wasmig:plugin/types@0.1.0": crate::plugin::wit::v0_1::wasmig::plugin0_1_0::types,
            "wasmig:plugin/sql@0.1.0": crate::plugin::wit::v0_1::wasmig::plugin0_1_0::sql,
            "wasmig:plugin/log@0.1.0": crate::plugin::wit::v0_1::wasmig::plugin0_1_0::log,
        },
    });
}

/// What a manifest declares beyond 0.1.0's record.
#[derive(Debug, Clone, Default)]
pub struct Declared {
    /// The tier the plugin needs (0.2.0 on; `None` before).
    pub needs: Option<Tier>,
    /// Per step, in manifest order, what 0.3.0 adds (`None` before).
    pub steps: Option<Vec<StepDeclared>>,
}

/// What a 0.3.0 manifest says of a step beyond 0.1.0's record.
#[derive(Debug, Clone, Default)]
pub struct StepDeclared {
    /// `revert` can undo it.
    pub reversible: bool,
    /// A seed step re-run whenever its fingerprint changes.
    pub repeatable: bool,
    /// Earlier fingerprints of the same content.
    pub accepts: Vec<String>,
    /// The SQL a SQL step runs.
    pub sql: Option<String>,
}

/// The manifest as every version reads it (0.1.0's record).
pub use v0_1::exports::wasmig::plugin0_1_0::plugin::PluginInfo;
/// How a step reports failure (0.1.0's variant; later versions' are converted to it).
pub use v0_1::exports::wasmig::plugin0_1_0::plugin::StepError;

/// WIT package versions this host can run, oldest first.
pub const SUPPORTED_WIT_VERSIONS: &[&str] = &["0.1.0", "0.2.0", "0.3.0"];

/// A 0.2.0-or-later manifest `$m` (of export module `$w`) as 0.1.0's record, with its tier.
/// Their records share 0.1.0's fields; a macro because each version's bindings are their
/// own types.
macro_rules! later_manifest {
    ($w:ident, $m:expr) => {{
        use v0_1::exports::wasmig::plugin0_1_0::plugin as v1;
        let m = $m;
        let needs = match m.needs {
            $w::Tier::Data => Tier::Data,
            $w::Tier::Schema => Tier::Schema,
            $w::Tier::Full => Tier::Full,
        };
        let info = PluginInfo {
            name: m.name,
            version: m.version,
            kind: match m.kind {
                $w::Kind::Migration => v1::Kind::Migration,
                $w::Kind::Seed => v1::Kind::Seed,
            },
            scope: match m.scope {
                $w::Scope::Shared => v1::Scope::Shared,
                $w::Scope::Tenant => v1::Scope::Tenant,
            },
            requires: m.requires,
            steps: m
                .steps
                .into_iter()
                .map(|s| v1::Step {
                    id: s.id,
                    description: s.description,
                    fingerprint: s.fingerprint,
                    transactional: s.transactional,
                })
                .collect(),
        };
        (info, needs)
    }};
}

/// A 0.2.0-or-later step error (`$e`, of type `$E`) as 0.1.0's.
macro_rules! later_error {
    ($E:ident, $e:expr) => {
        match $e {
            $E::Sql(s) => StepError::Sql(s),
            $E::Failed(m) => StepError::Failed(m),
            $E::UnknownStep(id) => StepError::UnknownStep(id),
            $E::Irreversible => StepError::Irreversible,
        }
    };
}

/// A plugin linked and ready to instantiate, whichever WIT version it was built for.
pub enum PluginPre {
    /// Built for `wasmig:plugin@0.1.0`.
    V0_1(v0_1::MigrationPluginPre<StepCtx>),
    /// Built for `wasmig:plugin@0.2.0`.
    V0_2(v0_2::MigrationPluginPre<StepCtx>),
    /// Built for `wasmig:plugin@0.3.0`.
    V0_3(v0_3::MigrationPluginPre<StepCtx>),
}

/// Which export to call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Export {
    /// `apply(step-id)`.
    Apply,
    /// `revert(step-id)`.
    Revert,
}

impl PluginPre {
    /// Links `component` for the `plugin` export version it declares (`version`, one of
    /// [`SUPPORTED_WIT_VERSIONS`]).
    pub fn new(
        linker: &wasmtime::component::Linker<StepCtx>,
        component: &wasmtime::component::Component,
        version: &str,
    ) -> wasmtime::Result<Self> {
        let pre = linker.instantiate_pre(component)?;
        Ok(match version {
            "0.1.0" => PluginPre::V0_1(v0_1::MigrationPluginPre::new(pre)?),
            "0.2.0" => PluginPre::V0_2(v0_2::MigrationPluginPre::new(pre)?),
            "0.3.0" => PluginPre::V0_3(v0_3::MigrationPluginPre::new(pre)?),
            other => wasmtime::bail!("wasmig:plugin@{other} is not served by this host"),
        })
    }

    /// The WIT version the plugin was built for.
    pub fn version(&self) -> &'static str {
        match self {
            PluginPre::V0_1(_) => "0.1.0",
            PluginPre::V0_2(_) => "0.2.0",
            PluginPre::V0_3(_) => "0.3.0",
        }
    }

    /// Instantiates the plugin in `store` and reads its manifest, with what versions after
    /// 0.1.0 declare beside it.
    pub async fn manifest(
        &self,
        store: &mut Store<StepCtx>,
    ) -> wasmtime::Result<(PluginInfo, Declared)> {
        match self {
            PluginPre::V0_1(pre) => {
                let inst = pre.instantiate_async(&mut *store).await?;
                let m = inst
                    .wasmig_plugin0_1_0_plugin()
                    .call_manifest(store)
                    .await?;
                Ok((m, Declared::default()))
            }
            PluginPre::V0_2(pre) => {
                use v0_2::exports::wasmig::plugin0_2_0::plugin as w;
                let inst = pre.instantiate_async(&mut *store).await?;
                let m = inst
                    .wasmig_plugin0_2_0_plugin()
                    .call_manifest(store)
                    .await?;
                let (info, needs) = later_manifest!(w, m);
                let declared = Declared {
                    needs: Some(needs),
                    steps: None,
                };
                Ok((info, declared))
            }
            PluginPre::V0_3(pre) => {
                use v0_3::exports::wasmig::plugin0_3_0::plugin as w;
                let inst = pre.instantiate_async(&mut *store).await?;
                let m = inst
                    .wasmig_plugin0_3_0_plugin()
                    .call_manifest(store)
                    .await?;
                let steps = m
                    .steps
                    .iter()
                    .map(|s| StepDeclared {
                        reversible: s.reversible,
                        repeatable: s.repeatable,
                        accepts: s.accepts.clone(),
                        sql: s.sql.clone(),
                    })
                    .collect();
                let (info, needs) = later_manifest!(w, m);
                let declared = Declared {
                    needs: Some(needs),
                    steps: Some(steps),
                };
                Ok((info, declared))
            }
        }
    }

    /// Instantiates the plugin in `store` (a fresh one per call) and calls `apply` or
    /// `revert` for `step_id`.
    pub async fn call(
        &self,
        store: &mut Store<StepCtx>,
        export: Export,
        step_id: &str,
    ) -> wasmtime::Result<Result<(), StepError>> {
        match self {
            PluginPre::V0_1(pre) => {
                let inst = pre.instantiate_async(&mut *store).await?;
                let exports = inst.wasmig_plugin0_1_0_plugin();
                match export {
                    Export::Apply => exports.call_apply(store, step_id).await,
                    Export::Revert => exports.call_revert(store, step_id).await,
                }
            }
            PluginPre::V0_2(pre) => {
                use v0_2::exports::wasmig::plugin0_2_0::plugin::StepError as E;
                let inst = pre.instantiate_async(&mut *store).await?;
                let exports = inst.wasmig_plugin0_2_0_plugin();
                let r = match export {
                    Export::Apply => exports.call_apply(store, step_id).await?,
                    Export::Revert => exports.call_revert(store, step_id).await?,
                };
                Ok(r.map_err(|e| later_error!(E, e)))
            }
            PluginPre::V0_3(pre) => {
                use v0_3::exports::wasmig::plugin0_3_0::plugin::StepError as E;
                let inst = pre.instantiate_async(&mut *store).await?;
                let exports = inst.wasmig_plugin0_3_0_plugin();
                let r = match export {
                    Export::Apply => exports.call_apply(store, step_id).await?,
                    Export::Revert => exports.call_revert(store, step_id).await?,
                };
                Ok(r.map_err(|e| later_error!(E, e)))
            }
        }
    }
}
