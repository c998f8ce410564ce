//! Operators' holds (`wasmig.hold`): a schema, or one plugin in a schema, kept where it is
//! until released. Every change is made in a run of its own, so `history` says who held or
//! released what, when, and why.

use tokio_postgres::Client;

use super::{ControlError, pg};
use crate::names::SchemaName;
use crate::plan::Hold;

/// Every hold, oldest first.
pub async fn read_holds(client: &Client) -> Result<Vec<Hold>, ControlError> {
    let rows = client
        .query(
            "SELECT schema_name, nullif(plugin, ''), reason,
                    to_char(held_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')
             FROM wasmig.hold ORDER BY held_at, schema_name, plugin",
            &[],
        )
        .await
        .map_err(pg("reading the holds"))?;
    Ok(rows
        .into_iter()
        .map(|r| Hold {
            schema: r.get(0),
            plugin: r.get(1),
            reason: r.get(2),
            since: r.get(3),
        })
        .collect())
}

/// Holds `schema` (only `plugin`'s steps, when given) with `reason`, in run `run_id`; an
/// existing hold on the same thing takes the new reason. Returns whether it was new.
pub async fn set_hold(
    client: &Client,
    schema: &SchemaName,
    plugin: Option<&str>,
    reason: &str,
    run_id: i64,
) -> Result<bool, ControlError> {
    Ok(client
        .query_one(
            "INSERT INTO wasmig.hold (schema_name, plugin, reason, run_id) VALUES ($1, coalesce($2, ''), $3, $4)
             ON CONFLICT (schema_name, plugin) DO UPDATE SET reason = EXCLUDED.reason, run_id = EXCLUDED.run_id
             RETURNING xmax = 0",
            &[&schema.as_str(), &plugin, &reason, &run_id],
        )
        .await
        .map_err(pg(format!("holding `{schema}`")))?
        .get(0))
}

/// Releases the holds on `schema` (only the one on `plugin`, when given; every hold of the
/// schema otherwise); returns how many there were.
pub async fn release_holds(
    client: &Client,
    schema: &SchemaName,
    plugin: Option<&str>,
) -> Result<u64, ControlError> {
    client
        .execute(
            "DELETE FROM wasmig.hold WHERE schema_name = $1 AND ($2::text IS NULL OR plugin = $2)",
            &[&schema.as_str(), &plugin],
        )
        .await
        .map_err(pg(format!("releasing the holds of `{schema}`")))
}
