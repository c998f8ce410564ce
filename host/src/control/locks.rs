//! Advisory locks: one per schema, taken without blocking by the runner that works on it;
//! who holds them (for `health`); ending tenant sessions that hold locks in the shared schema.

use tokio_postgres::Client;
use tokio_postgres::types::Type;

use super::ledger::ledger_entry;
use super::registry::ManagedSchema;
use super::{ControlError, LOCK_CLASS, pg};
use crate::names::SchemaName;
use crate::plan::LedgerEntry;

/// In one round trip: tries the schema's session-level advisory lock and, if it was free,
/// reads the schema's ledger under it. `None` when another runner holds the schema.
pub async fn try_lock_and_read(
    client: &Client,
    schema: &SchemaName,
    secret: &[u8; 32],
) -> Result<Option<Vec<LedgerEntry>>, ControlError> {
    // Typed parameters: one round trip (no separate prepare).
    let rows = client
        .query_typed(
            "WITH lock AS (SELECT pg_try_advisory_lock($1, $2) AS got)
             SELECT lock.got, l.plugin, l.step_id, l.checksum, l.artifact_checksum, l.plugin_version, l.mac, l.run_id
             FROM lock LEFT JOIN wasmig.ledger l ON lock.got AND l.schema_name = $3
             ORDER BY l.applied_at, l.plugin, l.step_id",
            &[
                (&LOCK_CLASS, Type::INT4),
                (&schema_lock_key(schema), Type::INT4),
                (&schema.as_str(), Type::TEXT),
            ],
        )
        .await
        .map_err(pg(format!("locking schema `{schema}`")))?;
    if !rows.first().is_some_and(|r| r.get::<_, bool>(0)) {
        return Ok(None);
    }
    Ok(Some(
        rows.iter()
            .filter(|r| r.get::<_, Option<&str>>(1).is_some())
            .map(|r| ledger_entry(r, 1, schema.as_str(), secret))
            .collect(),
    ))
}

/// Tries the locks of all `schemas` in one statement; returns those another runner holds,
/// having released the others again (all or none are held afterwards).
pub async fn try_lock_schemas(
    client: &Client,
    schemas: &[SchemaName],
) -> Result<Vec<SchemaName>, ControlError> {
    let names: Vec<&str> = schemas.iter().map(SchemaName::as_str).collect();
    let keys: Vec<i32> = schemas.iter().map(schema_lock_key).collect();
    let rows = client
        .query(
            "SELECT s, pg_try_advisory_lock($1, k) FROM unnest($2::text[], $3::int4[]) AS t(s, k)",
            &[&LOCK_CLASS, &names, &keys],
        )
        .await
        .map_err(pg("locking the schemas"))?;
    let not_got: std::collections::HashSet<&str> = rows
        .iter()
        .filter(|r| !r.get::<_, bool>(1))
        .map(|r| r.get::<_, &str>(0))
        .collect();
    let busy: Vec<SchemaName> = schemas
        .iter()
        .filter(|s| not_got.contains(s.as_str()))
        .cloned()
        .collect();
    if !busy.is_empty() {
        let held: Vec<SchemaName> = schemas
            .iter()
            .filter(|s| !busy.contains(s))
            .cloned()
            .collect();
        release_schemas(client, &held).await?;
    }
    Ok(busy)
}

/// Releases the locks of `schemas` in one statement.
pub async fn release_schemas(client: &Client, schemas: &[SchemaName]) -> Result<(), ControlError> {
    let keys: Vec<i32> = schemas.iter().map(schema_lock_key).collect();
    client
        .query(
            "SELECT pg_advisory_unlock($1, k) FROM unnest($2::int4[]) AS k",
            &[&LOCK_CLASS, &keys],
        )
        .await
        .map_err(pg("releasing the schemas"))?;
    Ok(())
}

/// Releases the schema's lock (no write, so no commit to wait for).
pub async fn release_schema(client: &Client, schema: &SchemaName) -> Result<(), ControlError> {
    client
        .query_typed(
            "SELECT pg_advisory_unlock($1, $2)",
            &[
                (&LOCK_CLASS, Type::INT4),
                (&schema_lock_key(schema), Type::INT4),
            ],
        )
        .await
        .map_err(pg(format!("releasing schema `{schema}`")))?;
    Ok(())
}

/// Ends the sessions of tenant roles that hold locks on relations of the shared schema
/// (a tenant step reading a shared table keeps its lock until it commits): the shared
/// schema's migration goes first. Returns how many sessions were ended.
pub async fn end_tenant_sessions_locking(
    client: &Client,
    shared: &SchemaName,
) -> Result<i64, ControlError> {
    Ok(client
        .query_one(
            "SELECT count(pg_catalog.pg_terminate_backend(a.pid))
               FROM pg_catalog.pg_stat_activity a
              WHERE a.usename IN (SELECT role_name FROM wasmig.managed_schema WHERE scope = 'tenant')
                AND EXISTS (SELECT 1 FROM pg_catalog.pg_locks l
                              JOIN pg_catalog.pg_class c ON c.oid = l.relation
                             WHERE l.pid = a.pid AND l.database = (SELECT oid FROM pg_catalog.pg_database
                                                                    WHERE datname = pg_catalog.current_database())
                               AND c.relnamespace = (SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = $1))",
            &[&shared.as_str()],
        )
        .await
        .map_err(pg(format!(
            "ending tenant sessions that hold locks in the shared schema `{shared}`"
        )))?
        .get(0))
}

/// A wasmig advisory lock someone holds.
#[derive(Debug, Clone)]
pub struct HeldLock {
    /// The schema it protects (`?` if no registered schema has that key).
    pub schema: String,
    /// Backend holding it.
    pub pid: i32,
    /// Its `application_name`.
    pub application_name: String,
    /// Seconds since that session last changed state (a lower bound of the hold time for
    /// a session-level lock taken when the schema's work started).
    pub held_s: f64,
}

/// wasmig's advisory locks currently held, with their holders.
pub async fn held_locks(
    client: &Client,
    reg: &[ManagedSchema],
) -> Result<Vec<HeldLock>, ControlError> {
    let rows = client
        .query(
            "SELECT l.objid::int4, a.pid, coalesce(a.application_name, ''),
                    extract(epoch FROM clock_timestamp() - coalesce(a.query_start, a.backend_start))::float8
             FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
             WHERE l.locktype = 'advisory' AND l.granted AND l.classid::int4 = $1 AND l.objsubid = 2
               AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            &[&LOCK_CLASS],
        )
        .await
        .map_err(pg("reading advisory locks"))?;
    Ok(rows
        .iter()
        .map(|r| {
            let key: i32 = r.get(0);
            HeldLock {
                schema: reg
                    .iter()
                    .find(|m| schema_lock_key(&m.schema) == key)
                    .map_or_else(|| "?".to_owned(), |m| m.schema.to_string()),
                pid: r.get(1),
                application_name: r.get(2),
                held_s: r.get(3),
            }
        })
        .collect())
}

/// Lock key for one schema (second key of the two-key advisory lock).
pub fn schema_lock_key(schema: &SchemaName) -> i32 {
    let h = blake3::hash(schema.as_str().as_bytes());
    i32::from_le_bytes(h.as_bytes()[..4].try_into().expect("4 bytes"))
}
