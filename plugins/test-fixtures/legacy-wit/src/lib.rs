//! Test fixture: a plugin built for `wasmig:plugin@0.1.0`, as every plugin was before 0.2.0,
//! straight from that published WIT (not through today's SDK). The host must keep running it;
//! its manifest cannot declare a tier, so it runs with what the operator granted.
wit_bindgen::generate!({
    world: "wasmig:plugin/migration-plugin@0.1.0",
    path: "../../../guest-sdk/wit",
    generate_all,
});

use exports::wasmig::plugin0_1_0::plugin::{Guest, Kind, PluginInfo, Scope, Step, StepError};
use wasmig::plugin0_1_0::sql;

const UP: &str = "CREATE TABLE legacy_note (id bigint PRIMARY KEY, body text NOT NULL)";

struct Legacy;

impl Guest for Legacy {
    fn manifest() -> PluginInfo {
        PluginInfo {
            name: "legacy".into(),
            version: "0.1.0".into(),
            kind: Kind::Migration,
            scope: Scope::Tenant,
            requires: vec![],
            steps: vec![Step {
                id: "0001_legacy_note".into(),
                description: "Create legacy_note".into(),
                fingerprint: "sql:legacy-0001".into(),
                transactional: true,
            }],
        }
    }
    fn apply(step: String) -> Result<(), StepError> {
        if step != "0001_legacy_note" {
            return Err(StepError::UnknownStep(step));
        }
        sql::batch(UP).map_err(StepError::Sql)
    }
    fn revert(_: String) -> Result<(), StepError> {
        Err(StepError::Irreversible)
    }
}

export!(Legacy);
