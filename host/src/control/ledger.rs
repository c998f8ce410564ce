//! The ledger: reading it (with each row's MAC checked), and the operator's own writes to it
//! (`baseline`, `repair`).

use std::collections::HashMap;

use tokio_postgres::Client;

use super::grants::StepGrant;
use super::{ControlError, pg};
use crate::names::SchemaName;
use crate::plan::LedgerEntry;

/// The ledger (of `schemas`, or all of it) in one query, grouped by schema; each row's MAC is
/// checked with the control secret, so rows not written through a host-issued grant are
/// marked forged.
pub async fn read_ledger(
    client: &Client,
    schemas: Option<&[&str]>,
    secret: &[u8; 32],
) -> Result<HashMap<String, Vec<LedgerEntry>>, ControlError> {
    let rows = client
        .query(
            "SELECT schema_name, plugin, step_id, checksum, artifact_checksum, plugin_version, mac, run_id
             FROM wasmig.ledger
             WHERE $1::text[] IS NULL OR schema_name = ANY($1)
             ORDER BY schema_name, applied_at, plugin, step_id",
            &[&schemas],
        )
        .await
        .map_err(pg("reading the ledger"))?;
    let mut out: HashMap<String, Vec<LedgerEntry>> = HashMap::new();
    for r in rows {
        let schema_name: String = r.get(0);
        let entry = ledger_entry(&r, 1, &schema_name, secret);
        out.entry(schema_name).or_default().push(entry);
    }
    Ok(out)
}

/// Reads `plugin, step_id, checksum, artifact_checksum, plugin_version, mac, run_id` starting
/// at column `at` and verifies the MAC.
pub(crate) fn ledger_entry(
    r: &tokio_postgres::Row,
    at: usize,
    schema: &str,
    secret: &[u8; 32],
) -> LedgerEntry {
    let fields = crate::secret::LedgerMacFields {
        schema,
        plugin: r.get(at),
        step_id: r.get(at + 1),
        checksum: r.get(at + 2),
        artifact_checksum: r.get(at + 3),
        plugin_version: r.get(at + 4),
    };
    let mac: &str = r.get(at + 5);
    LedgerEntry {
        authentic: crate::secret::ledger_mac(secret, &fields) == mac,
        plugin: fields.plugin.to_owned(),
        step_id: fields.step_id.to_owned(),
        checksum: fields.checksum.to_owned(),
        artifact_checksum: fields.artifact_checksum.to_owned(),
        run_id: r.get(at + 6),
    }
}

/// Records steps as applied without running them (`wasmig baseline`): operator-written
/// ledger rows with valid MACs; rows already present are left alone. Returns how many were
/// added.
pub async fn baseline_rows(
    client: &Client,
    run_id: i64,
    schema: &SchemaName,
    grants: &[StepGrant],
) -> Result<u64, ControlError> {
    let col = |f: fn(&StepGrant) -> &str| grants.iter().map(f).collect::<Vec<&str>>();
    client
        .execute(
            "INSERT INTO wasmig.ledger (schema_name, plugin, step_id, checksum, artifact_checksum,
                                        plugin_version, applied_at, duration_ms, run_id, mac)
             SELECT $1, p, s, c, a, v, clock_timestamp(), 0, $2, m
             FROM unnest($3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[])
                  AS u(p, s, c, a, v, m)
             ON CONFLICT (schema_name, plugin, step_id) DO NOTHING",
            &[
                &schema.as_str(),
                &run_id,
                &col(|g| &g.plugin),
                &col(|g| &g.step_id),
                &col(|g| &g.checksum),
                &col(|g| &g.artifact_checksum),
                &col(|g| &g.plugin_version),
                &col(|g| &g.mac),
            ],
        )
        .await
        .map_err(pg(format!("recording a baseline in `{schema}`")))
}

/// Rewrites one ledger row with the current checksum (`wasmig repair`); returns the old
/// checksum, or `None` if the step is not recorded.
pub async fn repair_row(
    client: &Client,
    schema: &SchemaName,
    g: &StepGrant,
) -> Result<Option<String>, ControlError> {
    let row = client
        .query_opt(
            "UPDATE wasmig.ledger AS l
                SET checksum = $4, artifact_checksum = $5, plugin_version = $6, mac = $7
               FROM (SELECT checksum AS old FROM wasmig.ledger
                      WHERE schema_name = $1 AND plugin = $2 AND step_id = $3 FOR UPDATE) o
              WHERE l.schema_name = $1 AND l.plugin = $2 AND l.step_id = $3
             RETURNING o.old",
            &[
                &schema.as_str(),
                &g.plugin,
                &g.step_id,
                &g.checksum,
                &g.artifact_checksum,
                &g.plugin_version,
                &g.mac,
            ],
        )
        .await
        .map_err(pg(format!("repairing a ledger row of `{schema}`")))?;
    Ok(row.map(|r| r.get(0)))
}

/// Keeps the SQL text of steps (`checksum`, plugin, step id, text), once per distinct
/// checksum: what `wasmig diff` shows a drifted step was applied with.
pub async fn store_step_texts(
    client: &Client,
    rows: &[(&str, &str, &str, &str)],
) -> Result<(), ControlError> {
    if rows.is_empty() {
        return Ok(());
    }
    let col = |i: usize| -> Vec<&str> {
        rows.iter()
            .map(|r| match i {
                0 => r.0,
                1 => r.1,
                2 => r.2,
                _ => r.3,
            })
            .collect()
    };
    client
        .execute(
            "INSERT INTO wasmig.step_text (checksum, plugin, step_id, sql)
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[])
             ON CONFLICT (checksum) DO NOTHING",
            &[&col(0), &col(1), &col(2), &col(3)],
        )
        .await
        .map_err(pg("keeping the steps' SQL text"))?;
    Ok(())
}

/// The SQL texts kept for `checksums` (those without one are absent).
pub async fn step_texts(
    client: &Client,
    checksums: &[&str],
) -> Result<HashMap<String, String>, ControlError> {
    let rows = client
        .query(
            "SELECT checksum, sql FROM wasmig.step_text WHERE checksum = ANY($1)",
            &[&checksums],
        )
        .await
        .map_err(pg("reading the steps' SQL text"))?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}
