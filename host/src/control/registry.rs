//! The registry of managed schemas: their roles (names, passwords, session limits), the
//! tenant group, creating a schema with its role, dropping a tenant.

use std::collections::BTreeMap;

use tokio_postgres::Client;

use super::ddl::{FUNCTIONS_OF_SCHEMA_ROLES, operator_is_superuser};
use super::locks::schema_lock_key;
use super::secret::read_secret;
use super::{ControlError, LOCK_CLASS, REGISTRY_LOCK, pg};
use crate::db::quote::{ident, literal};
use crate::labels::Labels;
use crate::names::SchemaName;
use crate::plan::Scope;

/// A schema wasmig manages.
#[derive(Debug, Clone)]
pub struct ManagedSchema {
    /// Schema name.
    pub schema: SchemaName,
    /// Shared or tenant.
    pub scope: Scope,
    /// Its own role.
    pub role: String,
    /// Display name (tenants).
    pub name: Option<String>,
    /// Domain (tenants).
    pub domain: Option<String>,
    /// Creation time, RFC 3339.
    pub created_at: String,
    /// Its labels (tenants).
    pub labels: Labels,
}

/// Labels as stored (a JSON object); a value someone stored by hand that is not a string is
/// kept as its JSON text.
fn labels_from_json(schema: &str, json: &str) -> Result<Labels, ControlError> {
    let map: BTreeMap<String, serde_json::Value> =
        serde_json::from_str(json).map_err(|e| ControlError::Host {
            what: "reading the schema registry".into(),
            reason: format!("the labels of schema `{schema}` are not a JSON object: {e}"),
        })?;
    Ok(map
        .into_iter()
        .map(|(k, v)| match v {
            serde_json::Value::String(s) => (k, s),
            other => (k, other.to_string()),
        })
        .collect())
}

/// Labels as the JSON text the registry stores.
fn labels_json(labels: &Labels) -> String {
    serde_json::to_string(labels).expect("a map of strings serialises")
}

/// Adds `set` to the labels of the tenants `schemas` (replacing the values of keys they
/// have) and removes the keys `remove`; returns the schemas of `schemas` that are not
/// registered tenants (nothing was changed for them).
pub async fn set_labels(
    client: &Client,
    schemas: &[SchemaName],
    set: &Labels,
    remove: &[String],
) -> Result<Vec<SchemaName>, ControlError> {
    let names: Vec<&str> = schemas.iter().map(SchemaName::as_str).collect();
    let changed: Vec<String> = client
        .query(
            "UPDATE wasmig.managed_schema SET labels = (labels || $2::text::jsonb) - $3::text[]
              WHERE schema_name = ANY($1) AND scope = 'tenant' RETURNING schema_name",
            &[&names, &labels_json(set), &remove],
        )
        .await
        .map_err(pg("changing tenant labels"))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    Ok(schemas
        .iter()
        .filter(|s| !changed.iter().any(|c| c == s.as_str()))
        .cloned()
        .collect())
}

/// Adds `labels` to the registry row of `schema` (inside its creation or adoption).
pub(super) async fn add_labels(
    tx: &tokio_postgres::Transaction<'_>,
    schema: &SchemaName,
    labels: &Labels,
) -> Result<(), ControlError> {
    if labels.is_empty() {
        return Ok(());
    }
    tx.execute(
        "UPDATE wasmig.managed_schema SET labels = labels || $2::text::jsonb WHERE schema_name = $1",
        &[&schema.as_str(), &labels_json(labels)],
    )
    .await
    .map_err(pg(format!("labelling schema `{schema}`")))?;
    Ok(())
}

/// All managed schemas, shared first, then tenants by name.
pub async fn list_schemas(client: &Client) -> Result<Vec<ManagedSchema>, ControlError> {
    let rows = client
        .query(
            "SELECT schema_name, scope, role_name, display_name, domain,
                    to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'),
                    labels::text
             FROM wasmig.managed_schema ORDER BY scope = 'tenant', schema_name",
            &[],
        )
        .await
        .map_err(pg("reading the schema registry"))?;
    rows.iter()
        .map(|r| {
            let name: String = r.get(0);
            let scope: String = r.get(1);
            Ok(ManagedSchema {
                schema: SchemaName::parse_shared(&name).map_err(|e| ControlError::Host {
                    what: "reading the schema registry".into(),
                    reason: e.to_string(),
                })?,
                scope: Scope::parse(&scope).ok_or_else(|| ControlError::Host {
                    what: "reading the schema registry".into(),
                    reason: format!(
                        "schema `{name}` has scope `{scope}`, neither shared nor tenant"
                    ),
                })?,
                role: r.get(2),
                name: r.get(3),
                domain: r.get(4),
                created_at: r.get(5),
                labels: labels_from_json(&name, r.get(6))?,
            })
        })
        .collect()
}

/// The role name for a schema: `<database>_<schema>` when it fits in 63 bytes, otherwise
/// `wasmig_` plus a hash (roles are cluster-wide, so the database name keeps them apart).
pub fn role_name_for(dbname: &str, schema: &SchemaName) -> String {
    readable_or_hashed(dbname, schema.as_str(), "wasmig_")
}

/// `<database>_<name>` in lowercase when that is a plain identifier of at most 63 bytes,
/// else `prefix` and a hash of both (the same inputs always give the same role).
fn readable_or_hashed(dbname: &str, name: &str, prefix: &str) -> String {
    let readable = format!("{dbname}_{name}");
    if readable.len() <= 63
        && readable
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        return readable.to_ascii_lowercase();
    }
    let h = blake3::hash(format!("{dbname}\0{name}").as_bytes());
    format!("{prefix}{}", &h.to_hex()[..24])
}

/// The tenant's own application role (`init --tenant-app-roles`): `<database>_wasmig_app_<schema>`
/// when that fits, otherwise `wasmig_a_` plus a hash. Schema names cannot start with `wasmig`,
/// so it never collides with a schema's role.
pub fn tenant_app_role_for(dbname: &str, schema: &SchemaName) -> String {
    readable_or_hashed(dbname, &format!("wasmig_app_{schema}"), "wasmig_a_")
}

/// The group role every tenant role belongs to; shared plugins grant it read access to
/// shared tables. Schema names starting with `wasmig` are reserved, so this cannot collide
/// with a schema role.
pub fn tenant_group_for(dbname: &str) -> String {
    readable_or_hashed(dbname, "wasmig_tenants", "wasmig_g_")
}

/// Server-side limits of schema-role sessions (set on the role and at every connection).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionLimits {
    /// `statement_timeout`, milliseconds.
    pub statement_timeout_ms: u64,
    /// `lock_timeout`, milliseconds.
    pub lock_timeout_ms: u64,
    /// `idle_in_transaction_session_timeout`, milliseconds.
    pub idle_in_transaction_ms: u64,
    /// `temp_file_limit`, kB: temporary files (sorts, hashes, temporary tables) one session
    /// of the role may hold. Only a superuser can set it, and the role cannot raise it.
    pub temp_file_limit_kb: u64,
}

/// The default `lock_timeout` of plugin sessions. PostgreSQL queues lock requests: while a
/// step waits for a table lock the application holds, every later query on that table (the
/// application's too) waits behind the step. So the step's wait is the application's stall,
/// and it is kept short; a step that times out is rolled back and tried again (`--retries`).
pub const DEFAULT_LOCK_TIMEOUT_MS: u64 = 2_000;

impl Default for SessionLimits {
    fn default() -> Self {
        SessionLimits {
            statement_timeout_ms: 10 * 60 * 1000,
            lock_timeout_ms: DEFAULT_LOCK_TIMEOUT_MS,
            idle_in_transaction_ms: 60 * 1000,
            temp_file_limit_kb: 1 << 20,
        }
    }
}

impl SessionLimits {
    /// Startup options for a schema-role connection (they override role defaults). The
    /// tenant group's name is passed as `wasmig.tenant_group` for shared plugins that grant
    /// tenants read access.
    pub fn startup_options(&self, schema: &SchemaName, tenant_group: &str) -> String {
        format!(
            "-c search_path={schema} -c statement_timeout={} -c lock_timeout={} -c idle_in_transaction_session_timeout={} -c wasmig.tenant_group={tenant_group}",
            self.statement_timeout_ms, self.lock_timeout_ms, self.idle_in_transaction_ms
        )
    }
}

/// Options for [`ensure_schema`].
#[derive(Debug, Clone)]
pub struct EnsureSchema<'a> {
    /// The schema.
    pub schema: &'a SchemaName,
    /// Shared or tenant.
    pub scope: Scope,
    /// Display name (tenants).
    pub name: Option<&'a str>,
    /// Domain (tenants).
    pub domain: Option<&'a str>,
    /// Database name, for the role name.
    pub dbname: &'a str,
    /// Connection limit for the role.
    pub connection_limit: i32,
    /// Role defaults for timeouts.
    pub session: &'a SessionLimits,
    /// Application role that gets data privileges on everything plugins create here.
    pub app_role: Option<&'a str>,
    /// Labels added to the registry row (tenants).
    pub labels: &'a Labels,
}

/// Whether [`ensure_schema`] created anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ensured {
    /// Schema, role and registry row were created.
    Created,
    /// All three already existed.
    Existed,
}

/// Get-or-create-or-update a managed schema: its own role (login, no privileges beyond the
/// schema), the schema owned by that role, and the registry row, all in one transaction; an
/// existing registration takes the display name and domain given. The application role's
/// privileges are (re)applied every time. Returns what changed in an existing registration,
/// in words.
pub async fn ensure_schema(
    client: &mut Client,
    opts: &EnsureSchema<'_>,
) -> Result<(Ensured, String, Vec<String>), ControlError> {
    let schema = opts.schema;
    let what = || format!("creating schema `{schema}`");
    let tx = client.transaction().await.map_err(pg(what()))?;
    let (ensured, role) = if let Some((role, scope)) = lock_and_find(&tx, schema, &what).await? {
        if scope == Scope::Shared && opts.scope == Scope::Tenant {
            return Err(ControlError::SharedNotTenant(schema.to_string()));
        }
        (Ensured::Existed, role)
    } else {
        (
            Ensured::Created,
            create_schema_and_role(&tx, opts, Existing::Refuse).await?,
        )
    };
    let changed = if ensured == Ensured::Existed {
        update_identity(&tx, schema, opts.name, opts.domain).await?
    } else {
        Vec::new()
    };
    add_labels(&tx, schema, opts.labels).await?;
    if let Some(app) = opts.app_role {
        // A schema created just now is empty (only `public` may exist before `init`).
        let on = if ensured == Ensured::Created && schema.as_str() != "public" {
            AppObjects::None
        } else {
            AppObjects::AllInSchema
        };
        grant_app_role(&tx, schema, &role, app, on).await?;
        if opts.scope == Scope::Tenant && tenant_app_roles_on(&tx).await? {
            let tapp = tenant_app_role_for(opts.dbname, schema);
            ensure_tenant_app_role(&tx, schema, &tapp, app, opts.dbname).await?;
            grant_app_role(&tx, schema, &role, &tapp, on).await?;
        }
    }
    tx.commit().await.map_err(pg(what()))?;
    Ok((ensured, role, changed))
}

/// Gives the registration of `schema` the display name and domain given (those not given
/// stay); returns what changed, in words (`domain `a.example` -> `b.example``).
pub(super) async fn update_identity(
    tx: &tokio_postgres::Transaction<'_>,
    schema: &SchemaName,
    name: Option<&str>,
    domain: Option<&str>,
) -> Result<Vec<String>, ControlError> {
    if name.is_none() && domain.is_none() {
        return Ok(Vec::new());
    }
    let what = || format!("changing the name or domain of `{schema}`");
    let row = tx
        .query_one(
            "SELECT display_name, domain FROM wasmig.managed_schema WHERE schema_name = $1",
            &[&schema.as_str()],
        )
        .await
        .map_err(pg(what()))?;
    let (old_name, old_domain): (Option<String>, Option<String>) = (row.get(0), row.get(1));
    let mut changed = Vec::new();
    let shown = |v: &Option<String>| {
        v.as_deref().map_or("none".to_owned(), |v| {
            format!("`{}`", crate::text::inert(v, 200))
        })
    };
    for (label, old, new) in [("name", &old_name, name), ("domain", &old_domain, domain)] {
        if let Some(new) = new
            && old.as_deref() != Some(new)
        {
            changed.push(format!(
                "{label} {} -> `{}`",
                shown(old),
                crate::text::inert(new, 200)
            ));
        }
    }
    if !changed.is_empty() {
        tx.execute(
            "UPDATE wasmig.managed_schema SET display_name = coalesce($2, display_name), domain = coalesce($3, domain)
              WHERE schema_name = $1",
            &[&schema.as_str(), &name, &domain],
        )
        .await
        .map_err(pg(what()))?;
    }
    Ok(changed)
}

/// Takes the registry lock for the rest of `tx` and reads the registration of `schema`: its
/// role and scope, if it has one.
pub(super) async fn lock_and_find(
    tx: &tokio_postgres::Transaction<'_>,
    schema: &SchemaName,
    what: &dyn Fn() -> String,
) -> Result<Option<(String, Scope)>, ControlError> {
    tx.execute(
        "SELECT pg_advisory_xact_lock($1, $2)",
        &[&LOCK_CLASS, &REGISTRY_LOCK],
    )
    .await
    .map_err(pg(what()))?;
    find(tx, schema, what).await
}

/// Takes the schema's own lock for the rest of `tx`, without waiting (a run or another
/// adoption working on it refuses the schema, naming why), and reads its registration. The
/// registry lock is not taken: schemas locked this way are taken over in parallel.
pub(super) async fn lock_schema_and_find(
    tx: &tokio_postgres::Transaction<'_>,
    schema: &SchemaName,
    what: &dyn Fn() -> String,
) -> Result<Option<(String, Scope)>, ControlError> {
    let got: bool = tx
        .query_one(
            "SELECT pg_try_advisory_xact_lock($1, $2)",
            &[&LOCK_CLASS, &schema_lock_key(schema)],
        )
        .await
        .map_err(pg(what()))?
        .get(0);
    if !got {
        return Err(ControlError::Host {
            what: what(),
            reason: "another wasmig command is working on it (see `wasmig health`); run again when it is done".into(),
        });
    }
    find(tx, schema, what).await
}

/// The registration of `schema`: its role and scope, if it has one.
async fn find(
    tx: &tokio_postgres::Transaction<'_>,
    schema: &SchemaName,
    what: &dyn Fn() -> String,
) -> Result<Option<(String, Scope)>, ControlError> {
    let row = tx
        .query_opt(
            "SELECT role_name, scope FROM wasmig.managed_schema WHERE schema_name = $1",
            &[&schema.as_str()],
        )
        .await
        .map_err(pg(what()))?;
    row.map(|r| {
        let scope: String = r.get(1);
        let parsed = Scope::parse(&scope).ok_or_else(|| ControlError::Host {
            what: what(),
            reason: format!("the registry gives it scope `{scope}`, neither shared nor tenant"),
        })?;
        Ok((r.get(0), parsed))
    })
    .transpose()
}

/// What [`create_schema_and_role`] does with a schema that already exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Existing {
    /// Refuse it (wasmig manages only schemas it created), except `public`.
    Refuse,
    /// Take it over: the new role becomes its owner (`tenant adopt`).
    Take,
}

pub(super) async fn create_schema_and_role(
    tx: &tokio_postgres::Transaction<'_>,
    opts: &EnsureSchema<'_>,
    existing: Existing,
) -> Result<String, ControlError> {
    // Long: the schema, its role and their grants are created in one transaction, in the order the server requires.
    let schema = opts.schema;
    let what = || format!("creating schema `{schema}`");
    let role = role_name_for(opts.dbname, schema);
    let role_exists = tx
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)",
            &[&role],
        )
        .await
        .map_err(pg(what()))?
        .get::<_, bool>(0);
    if role_exists {
        return Err(ControlError::RoleTaken {
            role,
            schema: schema.to_string(),
        });
    }
    let schema_exists = tx
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)",
            &[&schema.as_str()],
        )
        .await
        .map_err(pg(what()))?
        .get::<_, bool>(0);
    if schema_exists && schema.as_str() != "public" && existing == Existing::Refuse {
        return Err(ControlError::SchemaTaken(schema.to_string()));
    }
    let secret = read_secret(tx).await?;
    let verifier = crate::secret::scram_verifier(&crate::secret::role_password(&secret, &role));
    let group = tenant_group_for(opts.dbname);
    let (r, s, g) = (ident(&role), ident(schema.as_str()), ident(&group));
    let verifier = literal(&verifier).expect("a SCRAM verifier has no NUL");
    let comment = literal(&format!("wasmig: role of schema {schema}")).expect("no NUL");
    let create_schema = if schema_exists {
        format!("ALTER SCHEMA {s} OWNER TO {r};")
    } else {
        format!("CREATE SCHEMA {s} AUTHORIZATION {r};")
    };
    let scope_ddl = match opts.scope {
        // Tenants read the shared schema only where shared plugins grant the group, and reach
        // the ledger functions through it (granted to the group at `init`): creating a tenant
        // changes no row another creation changes, so adoptions run in parallel.
        Scope::Tenant => format!("GRANT {g} TO {r};"),
        Scope::Shared => format!(
            "GRANT USAGE ON SCHEMA {s} TO {g};
             GRANT USAGE ON SCHEMA wasmig_api TO {r};
             GRANT EXECUTE ON FUNCTION {FUNCTIONS_OF_SCHEMA_ROLES} TO {r};"
        ),
    };
    let ddl = format!(
        "CREATE ROLE {r} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE INHERIT NOREPLICATION NOBYPASSRLS
             CONNECTION LIMIT {limit} PASSWORD {verifier};
         COMMENT ON ROLE {r} IS {comment};
         GRANT {r} TO CURRENT_USER;
         {create_schema}
         REVOKE ALL ON SCHEMA {s} FROM PUBLIC;
         {settings}
         {scope_ddl}",
        limit = opts.connection_limit,
        settings = role_settings(&role, schema, opts.session, operator_is_superuser(tx).await?),
    );
    tx.batch_execute(&ddl).await.map_err(pg(what()))?;
    tx.execute(
        "INSERT INTO wasmig.managed_schema (schema_name, scope, role_name, display_name, domain)
         VALUES ($1, $2, $3, $4, $5)",
        &[
            &schema.as_str(),
            &opts.scope.as_str(),
            &role,
            &opts.name,
            &opts.domain,
        ],
    )
    .await
    .map_err(pg(what()))?;
    Ok(role)
}

/// Which objects already in a schema [`grant_app_role`] grants the application role on.
#[derive(Debug, Clone, Copy)]
pub(super) enum AppObjects<'a> {
    /// None: the schema was created just now and is empty.
    None,
    /// Every table, sequence and function in the schema (`GRANT ... ON ALL ... IN SCHEMA`,
    /// which scans the whole catalog).
    AllInSchema,
    /// Those the given `GRANT` statements name.
    Named(&'a str),
}

/// Gives the application role `app` its data privileges on the objects of `schema` (as
/// `on` says) and, as default privileges, on whatever `role` creates there from now on.
pub(super) async fn grant_app_role(
    tx: &tokio_postgres::Transaction<'_>,
    schema: &SchemaName,
    role: &str,
    app: &str,
    on: AppObjects<'_>,
) -> Result<(), ControlError> {
    let what = || format!("granting application role `{app}` on schema `{schema}`");
    let exists: bool = tx
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)",
            &[&app],
        )
        .await
        .map_err(pg(what()))?
        .get(0);
    if !exists {
        return Err(ControlError::Host {
            what: what(),
            reason: format!(
                "role `{app}` does not exist; create it or change the application role setting"
            ),
        });
    }
    let (r, s, a) = (ident(role), ident(schema.as_str()), ident(app));
    let existing = match on {
        AppObjects::None => String::new(),
        AppObjects::AllInSchema => format!(
            "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {s} TO {a};
             GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA {s} TO {a};
             GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA {s} TO {a};"
        ),
        AppObjects::Named(grants) => grants.to_owned(),
    };
    tx.batch_execute(&format!(
        "GRANT USAGE ON SCHEMA {s} TO {a};
         {existing}
         ALTER DEFAULT PRIVILEGES FOR ROLE {r} IN SCHEMA {s} GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {a};
         ALTER DEFAULT PRIVILEGES FOR ROLE {r} IN SCHEMA {s} GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO {a};
         ALTER DEFAULT PRIVILEGES FOR ROLE {r} IN SCHEMA {s} GRANT EXECUTE ON FUNCTIONS TO {a};"
    ))
    .await
    .map_err(pg(what()))
}

/// Whether this database gives each tenant an application role of its own (`init
/// --tenant-app-roles`).
pub(super) async fn tenant_app_roles_on(
    c: &impl tokio_postgres::GenericClient,
) -> Result<bool, ControlError> {
    Ok(c.query_opt(
        "SELECT 1 FROM wasmig.meta WHERE key = 'tenant_app_roles' AND value = 'on'",
        &[],
    )
    .await
    .map_err(pg("reading whether tenants have application roles"))?
    .is_some())
}

/// Creates tenant `schema`'s application role `tapp` if it is missing: no login, the reads of
/// shared tables tenants are granted (through the tenant group), and the application role
/// `app` may `SET ROLE` to it. Records it in the registry. Its data rights on the schema are
/// [`grant_app_role`]'s, given by the caller.
pub(super) async fn ensure_tenant_app_role(
    tx: &tokio_postgres::Transaction<'_>,
    schema: &SchemaName,
    tapp: &str,
    app: &str,
    dbname: &str,
) -> Result<(), ControlError> {
    let what = || format!("creating the application role of tenant `{schema}`");
    let exists: bool = tx
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)",
            &[&tapp],
        )
        .await
        .map_err(pg(what()))?
        .get(0);
    let (t, a, g) = (ident(tapp), ident(app), ident(&tenant_group_for(dbname)));
    let comment = literal(&format!(
        "wasmig: the application's rights on tenant {schema} alone"
    ))
    .expect("no NUL");
    let create = if exists {
        String::new()
    } else {
        format!(
            "CREATE ROLE {t} NOLOGIN INHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS;
             COMMENT ON ROLE {t} IS {comment};"
        )
    };
    tx.batch_execute(&format!(
        "{create}
         GRANT {g} TO {t};
         GRANT {t} TO {a};"
    ))
    .await
    .map_err(pg(what()))?;
    tx.execute(
        "UPDATE wasmig.managed_schema SET app_role = $2 WHERE schema_name = $1",
        &[&schema.as_str(), &tapp],
    )
    .await
    .map_err(pg(what()))?;
    Ok(())
}

/// What lets every role call the tenant switch (`init` repeats it while tenant application
/// roles are on, since the control schema's DDL revokes everything from `PUBLIC` first).
pub(super) const TENANT_SWITCH_GRANTS: &str = "GRANT USAGE ON SCHEMA wasmig_api TO PUBLIC;
     GRANT EXECUTE ON FUNCTION wasmig_api.use_tenant(text), wasmig_api.tenant_app_role(text) TO PUBLIC;";

/// Turns tenant application roles on for this database (`init --tenant-app-roles`): every role
/// may call the tenant switch (it takes only a role the session's user belongs to, and the
/// application switches from one tenant's role to the next), and every tenant that has no application role
/// yet gets one, each in a transaction of its own under the schema's lock. Returns how many
/// got one.
pub async fn enable_tenant_app_roles(
    client: &mut Client,
    dbname: &str,
    app: &str,
) -> Result<usize, ControlError> {
    let what = "turning tenant application roles on";
    client
        .batch_execute(&format!(
            "INSERT INTO wasmig.meta (key, value) VALUES ('tenant_app_roles', 'on')
                 ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value;
             {TENANT_SWITCH_GRANTS}"
        ))
        .await
        .map_err(pg(what))?;
    let missing: Vec<(String, String)> = client
        .query(
            "SELECT schema_name, role_name FROM wasmig.managed_schema
              WHERE scope = 'tenant' AND app_role IS NULL ORDER BY schema_name",
            &[],
        )
        .await
        .map_err(pg(what))?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    for (name, role) in &missing {
        let schema = SchemaName::parse(name).map_err(|e| ControlError::Host {
            what: what.into(),
            reason: e.to_string(),
        })?;
        let tx = client.transaction().await.map_err(pg(what))?;
        tx.execute(
            "SELECT pg_advisory_xact_lock($1, $2)",
            &[&LOCK_CLASS, &schema_lock_key(&schema)],
        )
        .await
        .map_err(pg(what))?;
        let tapp = tenant_app_role_for(dbname, &schema);
        ensure_tenant_app_role(&tx, &schema, &tapp, app, dbname).await?;
        grant_app_role(&tx, &schema, role, &tapp, AppObjects::AllInSchema).await?;
        tx.commit().await.map_err(pg(what))?;
    }
    Ok(missing.len())
}

/// The settings a schema role has at every login (`ALTER ROLE ... SET`): its schema first on
/// the search path, the session limits, and with a superuser operator its `temp_file_limit`.
fn role_settings(role: &str, schema: &SchemaName, sl: &SessionLimits, superuser: bool) -> String {
    let (r, s) = (ident(role), ident(schema.as_str()));
    let temp = if superuser {
        format!(
            "ALTER ROLE {r} SET temp_file_limit = '{}kB';",
            sl.temp_file_limit_kb
        )
    } else {
        String::new()
    };
    format!(
        "ALTER ROLE {r} SET search_path = {s};
         ALTER ROLE {r} SET statement_timeout = {st};
         ALTER ROLE {r} SET lock_timeout = {lt};
         ALTER ROLE {r} SET idle_in_transaction_session_timeout = {it};
         {temp}",
        st = sl.statement_timeout_ms,
        lt = sl.lock_timeout_ms,
        it = sl.idle_in_transaction_ms,
    )
}

/// Puts a schema role back as wasmig made it, after a step that may have changed it (a
/// non-transactional step's `ALTER ROLE` is committed before the step's check refuses it):
/// its settings (every other one dropped) and its derived password.
pub async fn restore_role(
    client: &Client,
    role: &str,
    schema: &SchemaName,
    session: &SessionLimits,
    secret: &[u8; 32],
) -> Result<(), ControlError> {
    let superuser = operator_is_superuser(client).await?;
    client
        .batch_execute(&format!(
            "ALTER ROLE {} RESET ALL; {}",
            ident(role),
            role_settings(role, schema, session, superuser)
        ))
        .await
        .map_err(pg(format!("restoring the settings of role `{role}`")))?;
    reset_role_password(client, role, secret).await
}

/// Re-sets a schema role's password to the derived one (a plugin may change its own role's
/// password; PostgreSQL lets any role do that).
pub async fn reset_role_password(
    client: &Client,
    role: &str,
    secret: &[u8; 32],
) -> Result<(), ControlError> {
    let verifier = crate::secret::scram_verifier(&crate::secret::role_password(secret, role));
    let verifier = literal(&verifier).expect("a SCRAM verifier has no NUL");
    client
        .batch_execute(&format!("ALTER ROLE {} PASSWORD {verifier}", ident(role)))
        .await
        .map_err(pg(format!("restoring the password of role `{role}`")))
}

/// Creates the tenant group role if missing (at `init`, under the registry lock).
pub(super) async fn ensure_tenant_group(
    client: &impl tokio_postgres::GenericClient,
    dbname: &str,
) -> Result<String, ControlError> {
    let group = tenant_group_for(dbname);
    let exists: bool = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)",
            &[&group],
        )
        .await
        .map_err(pg("reading roles"))?
        .get(0);
    if !exists {
        client
            .batch_execute(&format!(
                "CREATE ROLE {} NOLOGIN NOINHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS",
                ident(&group)
            ))
            .await
            .map_err(pg(format!("creating the tenant group role `{group}`")))?;
    }
    // The operator acts for the group too: what a refused step left as the group is removed
    // by the operator's session even when it is not a superuser.
    client
        .batch_execute(&format!("GRANT {} TO CURRENT_USER", ident(&group)))
        .await
        .map_err(pg(format!("making the operator a member of `{group}`")))?;
    Ok(group)
}

/// Drops a tenant: its schema (CASCADE), its role, its registry row and its ledger rows.
/// Everything the role owned goes with it (`DROP ROLE` fails otherwise, in any database);
/// returns what the tenant group still owns in this database (no step may leave anything
/// owned by it, so anything listed was put there from outside wasmig).
pub async fn drop_tenant(
    client: &mut Client,
    schema: &SchemaName,
    dbname: &str,
) -> Result<Vec<String>, ControlError> {
    let what = || format!("dropping tenant `{schema}`");
    let tx = client.transaction().await.map_err(pg(what()))?;
    tx.execute(
        "SELECT pg_advisory_xact_lock($1, $2)",
        &[&LOCK_CLASS, &REGISTRY_LOCK],
    )
    .await
    .map_err(pg(what()))?;
    tx.execute(
        "SELECT pg_advisory_xact_lock($1, $2)",
        &[&LOCK_CLASS, &schema_lock_key(schema)],
    )
    .await
    .map_err(pg(what()))?;
    let row = tx
        .query_opt(
            "SELECT role_name, app_role FROM wasmig.managed_schema WHERE schema_name = $1 AND scope = 'tenant'",
            &[&schema.as_str()],
        )
        .await
        .map_err(pg(what()))?
        .ok_or_else(|| ControlError::UnknownTenant(schema.to_string()))?;
    let role: String = row.get(0);
    let tapp: Option<String> = row.get(1);
    let ddl = format!(
        "DROP SCHEMA IF EXISTS {s} CASCADE;
         DROP OWNED BY {r};
         DROP ROLE IF EXISTS {r};
         {drop_tapp}",
        s = ident(schema.as_str()),
        r = ident(&role),
        drop_tapp = tapp
            .map(|t| format!("DROP ROLE IF EXISTS {};", ident(&t)))
            .unwrap_or_default()
    );
    tx.batch_execute(&ddl).await.map_err(pg(what()))?;
    for table in ["ledger", "step_grant", "failure", "hold", "managed_schema"] {
        tx.execute(
            &format!("DELETE FROM wasmig.{table} WHERE schema_name = $1"),
            &[&schema.as_str()],
        )
        .await
        .map_err(pg(what()))?;
    }
    let left: Vec<String> = tx
        .query(
            "SELECT pg_catalog.pg_describe_object(d.classid, d.objid, d.objsubid)
               FROM pg_catalog.pg_shdepend d JOIN pg_catalog.pg_roles g ON g.oid = d.refobjid
              WHERE g.rolname = $1 AND d.deptype = 'o'
                AND d.refclassid = 'pg_catalog.pg_authid'::pg_catalog.regclass
                AND d.dbid = (SELECT oid FROM pg_catalog.pg_database
                               WHERE datname = pg_catalog.current_database())
              ORDER BY 1",
            &[&tenant_group_for(dbname)],
        )
        .await
        .map_err(pg(what()))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    tx.commit().await.map_err(pg(what()))?;
    Ok(left)
}
