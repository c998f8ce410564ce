//! One-time step grants: the token the host issues for each step a run may record, with its
//! capability tier, and their cleanup.

use tokio_postgres::Client;

use super::{ControlError, pg};
use crate::names::SchemaName;

/// Removes grants that expired (left by a runner that died).
pub async fn clear_expired_grants(client: &Client) -> Result<(), ControlError> {
    client
        .execute(
            "DELETE FROM wasmig.step_grant WHERE expires_at < clock_timestamp()",
            &[],
        )
        .await
        .map_err(pg("clearing expired step grants"))?;
    Ok(())
}

/// What a step grant lets its ledger write do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantAction {
    /// Record the applied step.
    Apply,
    /// Remove the reverted step's row.
    Revert,
    /// Rewrite the row of a repeatable step run again (its content changed).
    Rerun,
}

impl GrantAction {
    /// The value in `wasmig.step_grant.action`.
    pub fn as_sql(self) -> &'static str {
        match self {
            GrantAction::Apply => "apply",
            GrantAction::Revert => "revert",
            GrantAction::Rerun => "rerun",
        }
    }
}

/// What the host grants a schema role for one step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepGrant {
    /// Secret one-time token (the server stores only its sha256).
    pub token: [u8; 32],
    /// Plugin name.
    pub plugin: String,
    /// Step id.
    pub step_id: String,
    /// Step checksum.
    pub checksum: String,
    /// Artifact checksum.
    pub artifact_checksum: String,
    /// Plugin version.
    pub plugin_version: String,
    /// MAC of the ledger row this grant will produce.
    pub mac: String,
    /// What the grant lets the step's ledger write do.
    pub action: GrantAction,
    /// The capability tier the step runs with.
    pub tier: crate::plan::Tier,
    /// The step's own `temp_file_limit` in kB (the plugin's `max_temp_mb`), if it has one.
    pub temp_limit_kb: Option<i64>,
    /// The most bytes the step may grow its schema by (the plugin's `max_write_mb`).
    pub write_limit: i64,
}

/// Stores one-time grants (for any number of schemas) in one round trip and one commit.
pub async fn insert_grants(
    client: &Client,
    run_id: i64,
    grants: &[(&str, &SchemaName, &StepGrant)],
) -> Result<(), ControlError> {
    if grants.is_empty() {
        return Ok(());
    }
    let tokens: Vec<&[u8]> = grants.iter().map(|(_, _, g)| &g.token[..]).collect();
    let roles: Vec<&str> = grants.iter().map(|(r, _, _)| *r).collect();
    let schemas: Vec<&str> = grants.iter().map(|(_, s, _)| s.as_str()).collect();
    let col =
        |f: fn(&StepGrant) -> &str| grants.iter().map(|(_, _, g)| f(g)).collect::<Vec<&str>>();
    client
        .execute(
            "INSERT INTO wasmig.step_grant (token_hash, role_name, schema_name, plugin, step_id, checksum,
                                            artifact_checksum, plugin_version, run_id, mac, action, tier,
                                            temp_limit_kb, write_limit, expires_at)
             SELECT sha256(t), r, sc, p, s, c, a, v, $1, m, x, ti, tl, wl, clock_timestamp() + interval '1 day'
             FROM unnest($2::bytea[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
                         $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::int8[],
                         $14::int8[])
                  AS u(t, r, sc, p, s, c, a, v, m, x, ti, tl, wl)",
            &[
                &run_id,
                &tokens,
                &roles,
                &schemas,
                &col(|g| &g.plugin),
                &col(|g| &g.step_id),
                &col(|g| &g.checksum),
                &col(|g| &g.artifact_checksum),
                &col(|g| &g.plugin_version),
                &col(|g| &g.mac),
                &col(|g| g.action.as_sql()),
                &col(|g| g.tier.as_str()),
                &grants
                    .iter()
                    .map(|(_, _, g)| g.temp_limit_kb)
                    .collect::<Vec<Option<i64>>>(),
                &grants
                    .iter()
                    .map(|(_, _, g)| g.write_limit)
                    .collect::<Vec<i64>>(),
            ],
        )
        .await
        .map_err(pg("granting steps"))?;
    Ok(())
}

/// Removes the grants a run issued but did not use (steps not reached, schemas another
/// runner completed first).
pub async fn clear_run_grants(client: &Client, run_id: i64) -> Result<(), ControlError> {
    client
        .execute(
            "DELETE FROM wasmig.step_grant WHERE run_id = $1",
            &[&run_id],
        )
        .await
        .map_err(pg("clearing the run's unused step grants"))?;
    Ok(())
}
