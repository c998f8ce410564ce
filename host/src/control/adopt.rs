//! Taking over a schema another tool created (`tenant adopt`): its own login role, the schema
//! and every object in it owned by that role, the application role's data privileges, and
//! the registry row, in one transaction per schema. Objects that cannot be moved (owned by an
//! extension, of a kind wasmig does not transfer, or by a role the operator does not act for)
//! refuse the schema, by name. The objects of every schema are read in one pass beforehand
//! ([`inventory`]) and checked in one pass afterwards ([`adoption_leftovers`]).

use std::collections::HashMap;

use tokio_postgres::Transaction;

use super::registry::{
    AppObjects, Existing, add_labels, create_schema_and_role, ensure_tenant_app_role,
    grant_app_role, lock_schema_and_find, tenant_app_role_for, tenant_app_roles_on,
};
use super::{ControlError, EnsureSchema, pg};

/// Whether [`adopt_schema`] changes anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdoptMode {
    /// Everything, committed.
    Apply,
    /// Only report what would change (the transaction is rolled back).
    DryRun,
}

/// What adopting one schema did (or, in a dry run, would do).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Adopted {
    /// The schema is managed by wasmig now.
    Done {
        /// Its role.
        role: String,
        /// Whether the role and registry row were created now (else: adopted before).
        registered: bool,
        /// The objects whose owner changed, described (`table acme.notes`).
        transferred: Vec<String>,
        /// What changed in an existing registration (name, domain), in words.
        changed: Vec<String>,
    },
    /// Nothing was changed; this is what would be.
    Planned {
        /// Its role.
        role: String,
        /// Whether the role and registry row would be created.
        register: bool,
        /// The objects whose owner would change.
        transfer: Vec<String>,
    },
    /// The schema was left as it was: these objects cannot be given to its role.
    Refused {
        /// Each object, described, with why.
        objects: Vec<String>,
    },
}

/// One object of a schema being adopted, as the inventory read it.
#[derive(Debug, Clone)]
pub struct SchemaObject {
    /// `table acme.notes (owner django_app)`.
    described: String,
    /// Its owner's name.
    owner: String,
    /// The `ALTER` keyword that gives it to another role (`TABLE`, `ROUTINE`, ...), if wasmig
    /// transfers this kind of object.
    alter: Option<String>,
    /// Its quoted, schema-qualified name.
    name: String,
    /// What the application role is granted on it, if anything.
    grant: Option<AppGrant>,
    /// Whether it follows its owner (a sequence owned by a column moves with its table).
    follows: bool,
    /// The extension that owns it, if one does (it must stay the extension's).
    extension: Option<String>,
    /// Why the operator may not change its owner (it does not act for the owner), if so.
    not_permitted: Option<String>,
}

/// What the application role gets on an object of an adopted schema (what `GRANT ... ON ALL
/// ... IN SCHEMA` would give, named one by one: those forms scan the whole catalog, once per
/// schema, which a fleet of thousands of schemas cannot afford).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AppGrant {
    /// Tables, views, materialized views, foreign tables.
    Table,
    /// Sequences.
    Sequence,
    /// Functions and aggregates.
    Function,
}

/// Why the operator role may not change the owner of what `owner` owns: `ALTER ... OWNER`
/// needs the rights of the current owner.
fn not_permitted(owner: &str, operator: &str) -> String {
    let (o, op) = (
        crate::db::quote::ident(owner),
        crate::db::quote::ident(operator),
    );
    format!(
        "the operator role `{operator}` cannot change the owner of what `{owner}` owns; run as a superuser, or first `GRANT {o} TO {op}`"
    )
}

/// Every object of the schemas in `$1` (`text[]`), by schema, with its owner, the ALTER keyword
/// that transfers it (NULL: a kind wasmig does not transfer) and what the application role is
/// granted on it. Indexes, TOAST tables, table row types and array types follow their owner
/// and are not listed; sequences owned by a column are listed, marked as following.
const INVENTORY_SQL: &str = "
WITH s AS (
    SELECT n.oid, n.nspname FROM unnest($1::text[]) AS w(name)
      JOIN pg_catalog.pg_namespace n ON n.nspname = w.name
), objs AS (
    SELECT 'pg_class'::regclass AS cls, c.oid, c.relowner AS owner,
           CASE c.relkind WHEN 'r' THEN 'TABLE' WHEN 'p' THEN 'TABLE' WHEN 'v' THEN 'VIEW'
                WHEN 'm' THEN 'MATERIALIZED VIEW' WHEN 'S' THEN 'SEQUENCE'
                WHEN 'f' THEN 'FOREIGN TABLE' WHEN 'c' THEN 'TYPE' END AS kind,
           format('%I.%I', n.nspname, c.relname) AS name, n.nspname,
           CASE WHEN c.relkind = 'S' THEN 'sequence' WHEN c.relkind <> 'c' THEN 'table' END AS grant_class,
           c.relkind = 'S' AND EXISTS (
               SELECT 1 FROM pg_catalog.pg_depend d
                WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                  AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')) AS follows
      FROM pg_catalog.pg_class c JOIN s n ON n.oid = c.relnamespace
     WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f', 'c')
    UNION ALL
    SELECT 'pg_proc'::regclass, p.oid, p.proowner, 'ROUTINE',
           -- Argument types only: what GRANT and ALTER accept for every kind of routine
           -- (an ordered-set aggregate's identity arguments hold `ORDER BY`).
           format('%I.%I(%s)', n.nspname, p.proname, pg_catalog.oidvectortypes(p.proargtypes)),
           n.nspname, CASE WHEN p.prokind <> 'p' THEN 'function' END, false
      FROM pg_catalog.pg_proc p JOIN s n ON n.oid = p.pronamespace
    UNION ALL
    SELECT 'pg_type'::regclass, t.oid, t.typowner,
           CASE t.typtype WHEN 'd' THEN 'DOMAIN' ELSE 'TYPE' END,
           format('%I.%I', n.nspname, t.typname), n.nspname, NULL, false
      FROM pg_catalog.pg_type t JOIN s n ON n.oid = t.typnamespace
     WHERE t.typtype IN ('b', 'd', 'e', 'r')
       AND NOT (t.typcategory = 'A' AND t.typelem <> 0)

    UNION ALL
    SELECT 'pg_collation'::regclass, o.oid, o.collowner, 'COLLATION', format('%I.%I', n.nspname, o.collname), n.nspname, NULL, false
      FROM pg_catalog.pg_collation o JOIN s n ON n.oid = o.collnamespace
    UNION ALL
    SELECT 'pg_conversion'::regclass, o.oid, o.conowner, 'CONVERSION', format('%I.%I', n.nspname, o.conname), n.nspname, NULL, false
      FROM pg_catalog.pg_conversion o JOIN s n ON n.oid = o.connamespace
    UNION ALL
    SELECT 'pg_statistic_ext'::regclass, o.oid, o.stxowner, 'STATISTICS', format('%I.%I', n.nspname, o.stxname), n.nspname, NULL, false
      FROM pg_catalog.pg_statistic_ext o JOIN s n ON n.oid = o.stxnamespace
    UNION ALL
    SELECT 'pg_ts_config'::regclass, o.oid, o.cfgowner, 'TEXT SEARCH CONFIGURATION', format('%I.%I', n.nspname, o.cfgname), n.nspname, NULL, false
      FROM pg_catalog.pg_ts_config o JOIN s n ON n.oid = o.cfgnamespace
    UNION ALL
    SELECT 'pg_ts_dict'::regclass, o.oid, o.dictowner, 'TEXT SEARCH DICTIONARY', format('%I.%I', n.nspname, o.dictname), n.nspname, NULL, false
      FROM pg_catalog.pg_ts_dict o JOIN s n ON n.oid = o.dictnamespace
    UNION ALL
    SELECT 'pg_operator'::regclass, o.oid, o.oprowner, NULL, o.oid::regoperator::text, n.nspname, NULL, false
      FROM pg_catalog.pg_operator o JOIN s n ON n.oid = o.oprnamespace
    UNION ALL
    SELECT 'pg_opclass'::regclass, o.oid, o.opcowner, NULL, format('%I.%I', n.nspname, o.opcname), n.nspname, NULL, false
      FROM pg_catalog.pg_opclass o JOIN s n ON n.oid = o.opcnamespace
    UNION ALL
    SELECT 'pg_opfamily'::regclass, o.oid, o.opfowner, NULL, format('%I.%I', n.nspname, o.opfname), n.nspname, NULL, false
      FROM pg_catalog.pg_opfamily o JOIN s n ON n.oid = o.opfnamespace
)
SELECT o.nspname::text, pg_catalog.pg_describe_object(o.cls, o.oid, 0) || ' (owner ' || pg_catalog.pg_get_userbyid(o.owner) || ')',
       o.kind, o.name,
       (SELECT e.extname FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid
         WHERE d.classid = o.cls AND d.objid = o.oid AND d.refclassid = 'pg_extension'::regclass
           AND d.deptype = 'e' LIMIT 1),
       pg_catalog.pg_has_role(o.owner, 'USAGE'), pg_catalog.pg_get_userbyid(o.owner)::text,
       current_user::text, o.grant_class, o.follows
  FROM objs o
 ORDER BY 1, 2";

/// Every object of each schema in `schemas`, by schema, read in one pass over the catalogs
/// (a scan per schema would make adopting a fleet quadratic in its size).
pub async fn inventory(
    client: &tokio_postgres::Client,
    schemas: &[&str],
) -> Result<HashMap<String, Vec<SchemaObject>>, ControlError> {
    let rows = client
        .query(INVENTORY_SQL, &[&schemas])
        .await
        .map_err(pg("listing the objects of the schemas to adopt"))?;
    let mut out: HashMap<String, Vec<SchemaObject>> = HashMap::new();
    for row in &rows {
        let kind: Option<String> = row.get(2);
        let name: String = row.get(3);
        let owner: String = row.get(6);
        let may: bool = row.get(5);
        let grant = match row.get::<_, Option<&str>>(8) {
            Some("table") => Some(AppGrant::Table),
            Some("sequence") => Some(AppGrant::Sequence),
            Some("function") => Some(AppGrant::Function),
            _ => None,
        };
        out.entry(row.get(0)).or_default().push(SchemaObject {
            described: row.get(1),
            alter: kind,
            not_permitted: (!may).then(|| not_permitted(&owner, row.get(7))),
            extension: row.get(4),
            follows: row.get(9),
            grant,
            owner,
            name,
        });
    }
    Ok(out)
}

/// What is still not owned by its schema's role, per adopted schema among `schemas`: checked
/// after the fact, in one pass, so an object created while the fleet was being adopted is
/// reported, not assumed moved.
pub async fn adoption_leftovers(
    client: &tokio_postgres::Client,
    schemas: &[&str],
) -> Result<Vec<(String, String, Vec<String>)>, ControlError> {
    let roles: HashMap<String, String> = client
        .query(
            "SELECT schema_name, role_name FROM wasmig.managed_schema WHERE schema_name = ANY($1)",
            &[&schemas],
        )
        .await
        .map_err(pg("reading the roles of the adopted schemas"))?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let mut left: Vec<_> = inventory(client, schemas)
        .await?
        .into_iter()
        .filter_map(|(schema, objects)| {
            let role = roles.get(&schema)?.clone();
            let foreign: Vec<String> = objects
                .into_iter()
                .filter(|o| o.owner != role)
                .map(|o| o.described)
                .collect();
            (!foreign.is_empty()).then_some((schema, role, foreign))
        })
        .collect();
    left.sort();
    Ok(left)
}

/// The schema's role, and whether it is being registered now: under the schema's own lock
/// (not the registry's, so many schemas are adopted at once), the existing registration (of
/// the same scope), else a new role for an existing schema.
async fn role_for(
    tx: &Transaction<'_>,
    opts: &EnsureSchema<'_>,
    what: &dyn Fn() -> String,
) -> Result<(String, bool), ControlError> {
    Ok(match lock_schema_and_find(tx, opts.schema, what).await? {
        Some((role, scope)) => {
            if scope != opts.scope {
                return Err(ControlError::Host {
                    what: what(),
                    reason: format!("it is registered as a {} schema", scope.as_str()),
                });
            }
            (role, false)
        }
        None => {
            // The schema's owner, and whether the operator acts for it (`ALTER SCHEMA ...
            // OWNER` needs that): checked first, so the refusal says what to grant.
            let owner: Option<Option<String>> = tx
                .query_opt(
                    "SELECT pg_catalog.pg_has_role(nspowner, 'USAGE'),
                            pg_catalog.pg_get_userbyid(nspowner)::text, current_user::text
                       FROM pg_catalog.pg_namespace WHERE nspname = $1",
                    &[&opts.schema.as_str()],
                )
                .await
                .map_err(pg(what()))?
                .map(|r| (!r.get::<_, bool>(0)).then(|| not_permitted(r.get(1), r.get(2))));
            let Some(owner) = owner else {
                return Err(ControlError::Host {
                    what: what(),
                    reason:
                        "no such schema in this database; `wasmig tenant create` makes a new one"
                            .into(),
                });
            };
            if let Some(why) = owner {
                return Err(ControlError::Host {
                    what: what(),
                    reason: why,
                });
            }
            let role = create_schema_and_role(tx, opts, Existing::Take).await?;
            (role, true)
        }
    })
}

/// Adopts the schema `opts.schema`, whose objects [`inventory`] read: creates its role (unless
/// it was adopted before), gives it the schema and every object in it, grants the
/// application role, registers it. With [`AdoptMode::DryRun`], or when an object cannot be
/// moved, nothing is changed.
pub async fn adopt_schema(
    client: &mut tokio_postgres::Client,
    opts: &EnsureSchema<'_>,
    mode: AdoptMode,
    objects: &[SchemaObject],
) -> Result<Adopted, ControlError> {
    let schema = opts.schema;
    let what = || format!("adopting schema `{schema}`");
    let tx = client.transaction().await.map_err(pg(what()))?;
    let (role, register) = role_for(&tx, opts, &what).await?;
    let foreign: Vec<&SchemaObject> = objects
        .iter()
        .filter(|o| o.owner != role && !o.follows)
        .collect();
    let refused: Vec<String> = foreign
        .iter()
        .filter_map(|f| match (&f.extension, &f.alter, &f.not_permitted) {
            (Some(ext), _, _) => Some(format!(
                "{} belongs to extension `{ext}`, which must keep it",
                f.described
            )),
            (None, None, _) => Some(format!(
                "{}: wasmig does not transfer this kind of object; change its owner to the schema's role by hand or drop it",
                f.described
            )),
            (None, Some(_), Some(why)) => Some(format!("{}: {why}", f.described)),
            (None, Some(_), None) => None,
        })
        .collect();
    if !refused.is_empty() {
        // Dropping the transaction undoes the role and registry row made above.
        return Ok(Adopted::Refused { objects: refused });
    }
    let described: Vec<String> = foreign.iter().map(|f| f.described.clone()).collect();
    if mode == AdoptMode::DryRun {
        return Ok(Adopted::Planned {
            role,
            register,
            transfer: described,
        });
    }
    let r = crate::db::quote::ident(&role);
    let alters: Vec<String> = foreign
        .iter()
        .filter_map(|f| {
            f.alter
                .as_ref()
                .map(|k| format!("ALTER {k} {} OWNER TO {r}", f.name))
        })
        .collect();
    if !alters.is_empty() {
        tx.batch_execute(&(alters.join(";\n") + ";"))
            .await
            .map_err(pg(what()))?;
    }
    let changed = if register {
        Vec::new()
    } else {
        super::registry::update_identity(&tx, schema, opts.name, opts.domain).await?
    };
    add_labels(&tx, schema, opts.labels).await?;
    if let Some(app) = opts.app_role {
        let grants = app_grants(objects, app);
        grant_app_role(&tx, schema, &role, app, AppObjects::Named(&grants)).await?;
        if tenant_app_roles_on(&tx).await? {
            let tapp = tenant_app_role_for(opts.dbname, schema);
            ensure_tenant_app_role(&tx, schema, &tapp, app, opts.dbname).await?;
            let grants = app_grants(objects, &tapp);
            grant_app_role(&tx, schema, &role, &tapp, AppObjects::Named(&grants)).await?;
        }
    }
    tx.commit().await.map_err(pg(what()))?;
    Ok(Adopted::Done {
        role,
        registered: register,
        transferred: described,
        changed,
    })
}

/// The `GRANT` statements that give the application role `app` its data privileges on
/// `objects`, named one by one.
fn app_grants(objects: &[SchemaObject], app: &str) -> String {
    let a = crate::db::quote::ident(app);
    [
        (AppGrant::Table, "SELECT, INSERT, UPDATE, DELETE ON TABLE"),
        (AppGrant::Sequence, "USAGE, SELECT, UPDATE ON SEQUENCE"),
        (AppGrant::Function, "EXECUTE ON FUNCTION"),
    ]
    .into_iter()
    .filter_map(|(grant, privileges)| {
        let names: Vec<&str> = objects
            .iter()
            .filter(|o| o.grant == Some(grant))
            .map(|o| o.name.as_str())
            .collect();
        (!names.is_empty()).then(|| format!("GRANT {privileges} {} TO {a};", names.join(", ")))
    })
    .collect::<Vec<_>>()
    .join("\n")
}

/// The migrations Django recorded in `schema` (`django_migrations`: app label, name), or
/// `None` when the schema has no such table. Read as plain data only: the relation must be an
/// ordinary table (not a view, whose query would run as the operator), read without its
/// inheritance children, and row-level security is off for the read (a policy would run its
/// expressions with the operator's rights; with `row_security = off` the server refuses the
/// read instead), with only `pg_catalog` on the search path.
pub async fn django_migrations(
    client: &mut tokio_postgres::Client,
    schema: &crate::names::SchemaName,
) -> Result<Option<Vec<(String, String)>>, ControlError> {
    let what = || format!("reading `{schema}.django_migrations`");
    let tx = client.transaction().await.map_err(pg(what()))?;
    let kind: Option<String> = tx
        .query_opt(
            "SELECT c.relkind::text FROM pg_catalog.pg_class c
               JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname = $1 AND c.relname = 'django_migrations'",
            &[&schema.as_str()],
        )
        .await
        .map_err(pg(what()))?
        .map(|r| r.get(0));
    match kind.as_deref() {
        None => return Ok(None),
        Some("r") => {}
        Some(other) => {
            return Err(ControlError::Host {
                what: what(),
                reason: format!(
                    "it is not an ordinary table (relkind `{other}`), so wasmig does not read it"
                ),
            });
        }
    }
    let s = crate::db::quote::ident(schema.as_str());
    tx.batch_execute("SET LOCAL row_security = off; SET LOCAL search_path = pg_catalog")
        .await
        .map_err(pg(what()))?;
    let rows = tx
        .query(
            // `ONLY`: an inheritance child (a foreign table, say) is not read.
            &format!("SELECT app::text, name::text FROM ONLY {s}.django_migrations ORDER BY id"),
            &[],
        )
        .await
        .map_err(pg(what()))?;
    tx.rollback().await.map_err(pg(what()))?;
    Ok(Some(rows.iter().map(|r| (r.get(0), r.get(1))).collect()))
}
