//! The control schema's layout ([`CONTROL_DDL`], in `ddl.sql`), `wasmig init` (create or
//! upgrade it, take advisory locks and relation sizes away from tenants), and the checks of
//! its version and of what the operator role may do.

use tokio_postgres::Client;

use super::registry::ensure_tenant_group;
use super::{CONTROL_VERSION, ControlError, LOCK_CLASS, REGISTRY_LOCK, pg};
use crate::db::quote::ident;

/// The control schema's DDL, idempotent: run by every `wasmig init` (which upgrades in place).
pub(crate) const CONTROL_DDL: &str = include_str!("ddl.sql");

/// The functions of `wasmig_api` a schema role may call.
pub(crate) const FUNCTIONS_OF_SCHEMA_ROLES: &str = "wasmig_api.begin_step(bytea), wasmig_api.record_step(bytea, double precision, text), wasmig_api.unrecord_step(bytea, text), wasmig_api.run_script(text), wasmig_api.check_growth()";

/// The built-in functions every role but the operator and the application role loses:
/// advisory locks (any role may otherwise take any key, so a tenant could hold wasmig's own
/// schema locks, whose keys are predictable, or fill the server's shared lock table until no
/// one can connect), the relation-size functions (each opens and locks any relation by
/// oid, every tenant's included, so one query could fill the lock table too, and they tell
/// every tenant how big the others are), the functions that create large objects (a large
/// object belongs to no schema: it would outlive `tenant drop`, and a tenant acting as the
/// tenant group could leave one every other tenant may read and overwrite) and `pg_notify`
/// (notifications are held in the server process's memory until its transaction commits).
/// Function privileges are per database, so only this database changes.
const REVOKED_FUNCTIONS: &str = "SELECT p.oid::regprocedure FROM pg_catalog.pg_proc p
              WHERE p.pronamespace = 'pg_catalog'::regnamespace
                AND (p.proname LIKE 'pg\\_%advisory\\_%lock%'
                     OR p.proname IN ('pg_relation_size', 'pg_total_relation_size',
                                      'pg_table_size', 'pg_indexes_size',
                                      'lo_creat', 'lo_create', 'lo_from_bytea', 'pg_notify'))";

/// Revokes [`REVOKED_FUNCTIONS`] from `PUBLIC` and grants them to `grantee` (SQL: a quoted
/// role, or `CURRENT_USER`).
fn revoke_functions_sql(grantee: &str) -> String {
    format!(
        "DO $revoke$ DECLARE f regprocedure; BEGIN
           FOR f IN {REVOKED_FUNCTIONS} LOOP
             EXECUTE format('REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC', f);
             EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO {grantee}', f);
           END LOOP;
         END $revoke$;"
    )
}

/// Creates or upgrades the control schema (idempotent, safe to run concurrently).
/// `app_role` keeps the use of advisory locks and relation sizes, which every other role
/// loses.
pub async fn init(
    client: &mut Client,
    dbname: &str,
    app_role: Option<&str>,
) -> Result<(), ControlError> {
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).map_err(|e| ControlError::Host {
        what: "generating the control secret".into(),
        reason: e.to_string(),
    })?;
    let tx = client.transaction().await.map_err(pg("starting init"))?;
    tx.execute(
        "SELECT pg_advisory_xact_lock($1, $2)",
        &[&LOCK_CLASS, &REGISTRY_LOCK],
    )
    .await
    .map_err(pg("locking the registry"))?;
    if let Some(found) = control_version_in(&tx).await?
        && found > CONTROL_VERSION
    {
        return Err(ControlError::TooNew { found });
    }
    tx.batch_execute(CONTROL_DDL)
        .await
        .map_err(pg("creating the control schema `wasmig`"))?;
    // The secret is bound, never spliced into SQL text (which drivers and servers may log).
    tx.execute(
        "INSERT INTO wasmig.secret (id, key) VALUES (1, $1) ON CONFLICT (id) DO NOTHING",
        &[&&key[..]],
    )
    .await
    .map_err(pg("storing the control secret"))?;
    // Tenant roles reach the ledger functions through the tenant group they all belong to
    // (one grant, so creating tenants in parallel updates no shared catalog row); shared
    // roles, which are not in that group, get them one by one, including roles created
    // before a function existed.
    let group = ensure_tenant_group(&tx, dbname).await?;
    let roles: Vec<String> = tx
        .query(
            "SELECT role_name FROM wasmig.managed_schema WHERE scope = 'shared'",
            &[],
        )
        .await
        .map_err(pg("reading the schema registry"))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    for role in std::iter::once(group).chain(roles) {
        tx.batch_execute(&format!(
            "GRANT USAGE ON SCHEMA wasmig_api TO {r};
             GRANT EXECUTE ON FUNCTION {FUNCTIONS_OF_SCHEMA_ROLES} TO {r}",
            r = ident(&role)
        ))
        .await
        .map_err(pg(format!("granting role `{role}` the ledger functions")))?;
    }
    if super::registry::tenant_app_roles_on(&tx).await? {
        tx.batch_execute(super::registry::TENANT_SWITCH_GRANTS)
            .await
            .map_err(pg("letting every role call the tenant switch"))?;
    }
    if operator_is_superuser(&tx).await? {
        tx.batch_execute(
            "DROP EVENT TRIGGER IF EXISTS wasmig_guard_tenant_ddl;
             CREATE EVENT TRIGGER wasmig_guard_tenant_ddl ON ddl_command_start
                 WHEN TAG IN ('GRANT', 'REVOKE', 'ALTER DEFAULT PRIVILEGES')
                 EXECUTE FUNCTION wasmig.guard_tenant_ddl();
             DROP EVENT TRIGGER IF EXISTS wasmig_guard_tenant_objects;
             CREATE EVENT TRIGGER wasmig_guard_tenant_objects ON ddl_command_end
                 EXECUTE FUNCTION wasmig.guard_tenant_objects();",
        )
        .await
        .map_err(pg("installing the tenant DDL guard"))?;
        tx.batch_execute(&revoke_functions_sql("CURRENT_USER"))
            .await
            .map_err(pg(
                "taking advisory locks and relation sizes away from tenant roles",
            ))?;
        if let Some(app) = app_role {
            tx.batch_execute(&revoke_functions_sql(&ident(app).replace('%', "%%")))
                .await
                .map_err(pg(format!(
                    "letting the application role `{app}` keep advisory locks and relation sizes"
                )))?;
        }
    } else {
        tracing::warn!(
            "the operator role is not a superuser: the event trigger that stops tenant plugins from granting privileges was not installed, tenant roles can take advisory locks (including wasmig's own schema locks), and their temporary files are not capped; run `wasmig init` as a superuser to enforce these"
        );
    }
    tx.commit().await.map_err(pg("committing init"))?;
    Ok(())
}

async fn control_version_in(
    c: &impl tokio_postgres::GenericClient,
) -> Result<Option<i32>, ControlError> {
    let row = c
        .query_one("SELECT to_regclass('wasmig.meta') IS NOT NULL", &[])
        .await
        .map_err(pg("reading the control schema version"))?;
    if !row.get::<_, bool>(0) {
        return Ok(None);
    }
    let v = c
        .query_opt(
            "SELECT value FROM wasmig.meta WHERE key = 'control_version'",
            &[],
        )
        .await
        .map_err(pg("reading the control schema version"))?;
    Ok(v.and_then(|r| r.get::<_, String>(0).parse().ok()))
}

/// Fails unless the control schema exists and is a version this host understands.
pub async fn check_initialised(client: &Client) -> Result<(), ControlError> {
    match control_version_in(client).await? {
        None => Err(ControlError::NotInitialised),
        Some(v) if v > CONTROL_VERSION => Err(ControlError::TooNew { found: v }),
        Some(v) if v < CONTROL_VERSION => Err(ControlError::TooOld { found: v }),
        Some(_) => Ok(()),
    }
}

/// Whether the operator role is a superuser.
pub async fn operator_is_superuser(
    client: &impl tokio_postgres::GenericClient,
) -> Result<bool, ControlError> {
    Ok(client
        .query_one(
            "SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user",
            &[],
        )
        .await
        .map_err(pg("reading the operator role"))?
        .get(0))
}

/// Whether the object guard event trigger (installed by a superuser `init`) is enabled.
pub async fn object_guard_installed(client: &Client) -> Result<bool, ControlError> {
    Ok(client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_event_trigger
                             WHERE evtname = 'wasmig_guard_tenant_objects' AND evtenabled <> 'D')",
            &[],
        )
        .await
        .map_err(pg("checking the object guard"))?
        .get(0))
}

/// `server_version`.
pub async fn server_version(client: &Client) -> Result<String, ControlError> {
    Ok(client
        .query_one("SHOW server_version", &[])
        .await
        .map_err(pg("reading the server version"))?
        .get(0))
}

/// The control schema's version, `None` if `wasmig init` never ran.
pub async fn control_version(client: &Client) -> Result<Option<i32>, ControlError> {
    control_version_in(client).await
}

#[cfg(test)]
mod tests {
    use super::{CONTROL_DDL, CONTROL_VERSION};

    #[test]
    fn ddl_records_the_current_control_version() {
        assert!(CONTROL_DDL.contains(&format!("('control_version', '{CONTROL_VERSION}')")));
    }
}
