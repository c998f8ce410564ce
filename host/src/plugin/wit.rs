//! The WIT versions this host serves, side by side: the generated bindings of each, and
//! [`PluginPre`], which calls a pre-linked plugin of either version through one interface.
//!
//! `wasmig:plugin@0.2.0` reuses 0.1.0's values, `sql` and `log` as they are (its plugins
//! import them), so the capability is implemented once; only the exported `plugin`
//! interface differs. A 0.2.0 manifest declares the tier it needs; a 0.1.0 one cannot, so
//! its plugin runs with what the operator granted, as before.

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

/// The manifest as every version reads it (0.1.0's record).
pub use v0_1::exports::wasmig::plugin0_1_0::plugin::PluginInfo;
/// How a step reports failure (0.1.0's variant; later versions' are converted to it).
pub use v0_1::exports::wasmig::plugin0_1_0::plugin::StepError;

/// WIT package versions this host can run, oldest first.
pub const SUPPORTED_WIT_VERSIONS: &[&str] = &["0.1.0", "0.2.0"];

/// A plugin linked and ready to instantiate, whichever WIT version it was built for.
pub enum PluginPre {
    /// Built for `wasmig:plugin@0.1.0`.
    V0_1(v0_1::MigrationPluginPre<StepCtx>),
    /// Built for `wasmig:plugin@0.2.0`.
    V0_2(v0_2::MigrationPluginPre<StepCtx>),
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
            other => wasmtime::bail!("wasmig:plugin@{other} is not served by this host"),
        })
    }

    /// The WIT version the plugin was built for.
    pub fn version(&self) -> &'static str {
        match self {
            PluginPre::V0_1(_) => "0.1.0",
            PluginPre::V0_2(_) => "0.2.0",
        }
    }

    /// Instantiates the plugin in `store` and reads its manifest, with the tier it declares
    /// (`None` for 0.1.0 plugins, which cannot declare one).
    pub async fn manifest(
        &self,
        store: &mut Store<StepCtx>,
    ) -> wasmtime::Result<(PluginInfo, Option<Tier>)> {
        match self {
            PluginPre::V0_1(pre) => {
                let inst = pre.instantiate_async(&mut *store).await?;
                let m = inst
                    .wasmig_plugin0_1_0_plugin()
                    .call_manifest(store)
                    .await?;
                Ok((m, None))
            }
            PluginPre::V0_2(pre) => {
                use v0_2::exports::wasmig::plugin0_2_0::plugin as w;
                let inst = pre.instantiate_async(&mut *store).await?;
                let m = inst
                    .wasmig_plugin0_2_0_plugin()
                    .call_manifest(store)
                    .await?;
                let needs = match m.needs {
                    w::Tier::Data => Tier::Data,
                    w::Tier::Schema => Tier::Schema,
                    w::Tier::Full => Tier::Full,
                };
                let info = PluginInfo {
                    name: m.name,
                    version: m.version,
                    kind: match m.kind {
                        w::Kind::Migration => {
                            v0_1::exports::wasmig::plugin0_1_0::plugin::Kind::Migration
                        }
                        w::Kind::Seed => v0_1::exports::wasmig::plugin0_1_0::plugin::Kind::Seed,
                    },
                    scope: match m.scope {
                        w::Scope::Shared => {
                            v0_1::exports::wasmig::plugin0_1_0::plugin::Scope::Shared
                        }
                        w::Scope::Tenant => {
                            v0_1::exports::wasmig::plugin0_1_0::plugin::Scope::Tenant
                        }
                    },
                    requires: m.requires,
                    steps: m
                        .steps
                        .into_iter()
                        .map(|s| v0_1::exports::wasmig::plugin0_1_0::plugin::Step {
                            id: s.id,
                            description: s.description,
                            fingerprint: s.fingerprint,
                            transactional: s.transactional,
                        })
                        .collect(),
                };
                Ok((info, Some(needs)))
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
                Ok(r.map_err(|e| match e {
                    E::Sql(s) => StepError::Sql(s),
                    E::Failed(m) => StepError::Failed(m),
                    E::UnknownStep(id) => StepError::UnknownStep(id),
                    E::Irreversible => StepError::Irreversible,
                }))
            }
        }
    }
}
