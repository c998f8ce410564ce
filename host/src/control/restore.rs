//! The control-schema side of backups and restores: the ledger rows saved beside a dump, the
//! schema set aside while pg_restore runs as the tenant's role (with the one-time nonce the
//! object guard accepts from that session only), and the saved rows put back.

use tokio_postgres::Client;

use super::{ControlError, pg};
use crate::db::quote::{ident, literal};
use crate::names::SchemaName;

/// A schema's ledger rows as a JSON array, saved beside its dump.
pub async fn ledger_rows_json(op: &Client, schema: &SchemaName) -> Result<String, ControlError> {
    Ok(op
        .query_one(
            "SELECT coalesce(json_agg(l ORDER BY applied_at), '[]')::text FROM wasmig.ledger l WHERE schema_name = $1",
            &[&schema.as_str()],
        )
        .await
        .map_err(pg(format!("reading the ledger rows of `{schema}`")))?
        .get(0))
}

/// A restore in progress: `schema` is being restored while its current copy waits as
/// `aside`; `role` (the schema's own) runs pg_restore.
pub struct Restoring<'a> {
    /// The schema restored.
    pub schema: &'a SchemaName,
    /// Where its current copy waits (`wasmig_restore_<hash>`: reserved, collides with nothing).
    pub aside: &'a str,
    /// The schema's role.
    pub role: &'a str,
}

impl Restoring<'_> {
    /// Whether a copy set aside by an earlier restore is still there.
    pub async fn aside_exists(&self, op: &Client) -> Result<bool, ControlError> {
        Ok(op
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)",
                &[&self.aside],
            )
            .await
            .map_err(pg("looking for a schema left by an earlier restore"))?
            .get(0))
    }

    /// Sets the schema aside, creates it empty for the role, and lets a session of the role
    /// that presents `nonce` run DDL outside a step for at most an hour.
    pub async fn begin(&self, op: &Client, nonce: &str) -> Result<(), ControlError> {
        let (s, a, r) = (
            ident(self.schema.as_str()),
            ident(self.aside),
            ident(self.role),
        );
        let role = literal(self.role).unwrap_or_default();
        let nonce = literal(nonce).unwrap_or_default();
        op.batch_execute(&format!(
            "BEGIN; ALTER SCHEMA {s} RENAME TO {a}; CREATE SCHEMA {s} AUTHORIZATION {r}; REVOKE ALL ON SCHEMA {s} FROM PUBLIC;
             INSERT INTO wasmig.restoring (role_name, nonce_hash, expires_at)
                 VALUES ({role}, sha256(convert_to({nonce}, 'UTF8')), clock_timestamp() + interval '1 hour')
                 ON CONFLICT (role_name) DO UPDATE SET nonce_hash = EXCLUDED.nonce_hash, expires_at = EXCLUDED.expires_at;
             COMMIT;"
        ))
        .await
        .map_err(pg(format!("setting `{}` aside", self.schema)))
    }

    /// After a failed pg_restore: drops what it restored and puts the copy set aside back.
    pub async fn abandon(&self, op: &Client) -> Result<(), ControlError> {
        let (s, a) = (ident(self.schema.as_str()), ident(self.aside));
        let role = literal(self.role).unwrap_or_default();
        op.batch_execute(&format!(
            "BEGIN; DROP SCHEMA IF EXISTS {s} CASCADE; ALTER SCHEMA {a} RENAME TO {s};
             DELETE FROM wasmig.restoring WHERE role_name = {role}; COMMIT;"
        ))
        .await
        .map_err(pg(format!("putting `{}` back as it was", self.schema)))
    }

    /// After pg_restore succeeded: the saved ledger rows replace the schema's, the copy set
    /// aside is dropped and the nonce withdrawn, in one transaction.
    pub async fn complete(&self, op: &mut Client, rows_json: &str) -> Result<(), ControlError> {
        let what = || pg(format!("putting back the ledger rows of `{}`", self.schema));
        let tx = op.transaction().await.map_err(what())?;
        tx.execute(
            "DELETE FROM wasmig.ledger WHERE schema_name = $1",
            &[&self.schema.as_str()],
        )
        .await
        .map_err(what())?;
        tx.execute(
            "INSERT INTO wasmig.ledger SELECT * FROM json_populate_recordset(NULL::wasmig.ledger, $1::text::json)",
            &[&rows_json],
        )
        .await
        .map_err(what())?;
        // A tenant schema has no dependants outside itself (no other role can reference it),
        // so this drops only the old copy.
        tx.batch_execute(&format!("DROP SCHEMA {} CASCADE", ident(self.aside)))
            .await
            .map_err(what())?;
        tx.execute(
            "DELETE FROM wasmig.restoring WHERE role_name = $1",
            &[&self.role],
        )
        .await
        .map_err(what())?;
        tx.commit().await.map_err(what())
    }
}
