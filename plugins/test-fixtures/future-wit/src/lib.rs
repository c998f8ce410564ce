//! Test fixture: a plugin built for `wasmig:plugin@9.0.0`, a WIT version the host does not
//! support (same shape, newer version), so the host must say which version it wants.
wit_bindgen::generate!({ world: "migration-plugin", path: "wit" });

use exports::wasmig::plugin::plugin::{Guest, Kind, PluginInfo, Scope, Step, StepError};

struct Future;

impl Guest for Future {
    fn manifest() -> PluginInfo {
        PluginInfo {
            name: "future".into(),
            version: "9.0.0".into(),
            kind: Kind::Migration,
            scope: Scope::Tenant,
            requires: vec![],
            steps: vec![Step {
                id: "0001".into(),
                description: "Noop".into(),
                fingerprint: "sql:0".into(),
                transactional: true,
            }],
        }
    }
    fn apply(_: String) -> Result<(), StepError> {
        Ok(())
    }
    fn revert(_: String) -> Result<(), StepError> {
        Err(StepError::Irreversible)
    }
}

export!(Future);
