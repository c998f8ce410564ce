//! Taking over a schema another tool created (`tenant adopt`): its own login role, the schema
//! and every object in it owned by that role, the application role's data privileges, and
//! the registry row, in one transaction per schema. Objects that cannot be moved (owned by an
//! extension, or of a kind wasmig does not transfer) refuse the schema, by name.

use tokio_postgres::Transaction;

use super::registry::{Existing, create_schema_and_role, grant_app_role, lock_and_find};
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

/// One object in the schema not owned by the schema's role.
struct Foreign {
    /// `table acme.notes (owner django_app)`.
    described: String,
    /// The statement that gives it to the role, if wasmig can.
    alter: Option<String>,
    /// The extension that owns it, if one does (it must stay the extension's).
    extension: Option<String>,
}

/// Every object of schema `$1` not owned by role `$2`, with the statement that transfers it
/// (`{r}` stands for the quoted role). Indexes, TOAST tables, table row types, array types
/// and sequences owned by a column follow their owner and are not listed.
const FOREIGN_OBJECTS_SQL: &str = "
WITH r AS (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = $2),
objs AS (
    SELECT 'pg_class'::regclass AS cls, c.oid, c.relowner AS owner,
           CASE c.relkind WHEN 'r' THEN 'TABLE' WHEN 'p' THEN 'TABLE' WHEN 'v' THEN 'VIEW'
                WHEN 'm' THEN 'MATERIALIZED VIEW' WHEN 'S' THEN 'SEQUENCE'
                WHEN 'f' THEN 'FOREIGN TABLE' WHEN 'c' THEN 'TYPE' END AS kind,
           format('%I.%I', n.nspname, c.relname) AS name
      FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = $1 AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f', 'c')
       AND NOT (c.relkind = 'S' AND EXISTS (
           SELECT 1 FROM pg_catalog.pg_depend d
            WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
              AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')))
    UNION ALL
    SELECT 'pg_proc'::regclass, p.oid, p.proowner, 'ROUTINE',
           format('%I.%I(%s)', n.nspname, p.proname, pg_catalog.pg_get_function_identity_arguments(p.oid))
      FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
     WHERE n.nspname = $1
    UNION ALL
    SELECT 'pg_type'::regclass, t.oid, t.typowner,
           CASE t.typtype WHEN 'd' THEN 'DOMAIN' ELSE 'TYPE' END,
           format('%I.%I', n.nspname, t.typname)
      FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
     WHERE n.nspname = $1 AND t.typtype IN ('b', 'd', 'e', 'r')
       AND NOT (t.typcategory = 'A' AND t.typelem <> 0)

    UNION ALL
    SELECT 'pg_collation'::regclass, o.oid, o.collowner, 'COLLATION', format('%I.%I', n.nspname, o.collname)
      FROM pg_catalog.pg_collation o JOIN pg_catalog.pg_namespace n ON n.oid = o.collnamespace
     WHERE n.nspname = $1
    UNION ALL
    SELECT 'pg_conversion'::regclass, o.oid, o.conowner, 'CONVERSION', format('%I.%I', n.nspname, o.conname)
      FROM pg_catalog.pg_conversion o JOIN pg_catalog.pg_namespace n ON n.oid = o.connamespace
     WHERE n.nspname = $1
    UNION ALL
    SELECT 'pg_statistic_ext'::regclass, o.oid, o.stxowner, 'STATISTICS', format('%I.%I', n.nspname, o.stxname)
      FROM pg_catalog.pg_statistic_ext o JOIN pg_catalog.pg_namespace n ON n.oid = o.stxnamespace
     WHERE n.nspname = $1
    UNION ALL
    SELECT 'pg_ts_config'::regclass, o.oid, o.cfgowner, 'TEXT SEARCH CONFIGURATION', format('%I.%I', n.nspname, o.cfgname)
      FROM pg_catalog.pg_ts_config o JOIN pg_catalog.pg_namespace n ON n.oid = o.cfgnamespace
     WHERE n.nspname = $1
    UNION ALL
    SELECT 'pg_ts_dict'::regclass, o.oid, o.dictowner, 'TEXT SEARCH DICTIONARY', format('%I.%I', n.nspname, o.dictname)
      FROM pg_catalog.pg_ts_dict o JOIN pg_catalog.pg_namespace n ON n.oid = o.dictnamespace
     WHERE n.nspname = $1
    UNION ALL
    SELECT 'pg_operator'::regclass, o.oid, o.oprowner, NULL, o.oid::regoperator::text
      FROM pg_catalog.pg_operator o JOIN pg_catalog.pg_namespace n ON n.oid = o.oprnamespace
     WHERE n.nspname = $1
    UNION ALL
    SELECT 'pg_opclass'::regclass, o.oid, o.opcowner, NULL, format('%I.%I', n.nspname, o.opcname)
      FROM pg_catalog.pg_opclass o JOIN pg_catalog.pg_namespace n ON n.oid = o.opcnamespace
     WHERE n.nspname = $1
    UNION ALL
    SELECT 'pg_opfamily'::regclass, o.oid, o.opfowner, NULL, format('%I.%I', n.nspname, o.opfname)
      FROM pg_catalog.pg_opfamily o JOIN pg_catalog.pg_namespace n ON n.oid = o.opfnamespace
     WHERE n.nspname = $1
)
SELECT pg_catalog.pg_describe_object(o.cls, o.oid, 0) || ' (owner ' || pg_catalog.pg_get_userbyid(o.owner) || ')',
       o.kind, o.name,
       (SELECT e.extname FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid
         WHERE d.classid = o.cls AND d.objid = o.oid AND d.refclassid = 'pg_extension'::regclass
           AND d.deptype = 'e' LIMIT 1)
  FROM objs o
 WHERE o.owner <> (SELECT oid FROM r)
 ORDER BY 1";

/// The objects of the schema its role does not own yet.
async fn foreign_objects(
    tx: &Transaction<'_>,
    schema: &str,
    role: &str,
    what: &dyn Fn() -> String,
) -> Result<Vec<Foreign>, ControlError> {
    let rows = tx
        .query(FOREIGN_OBJECTS_SQL, &[&schema, &role])
        .await
        .map_err(pg(what()))?;
    let r = crate::db::quote::ident(role);
    Ok(rows
        .iter()
        .map(|row| {
            let kind: Option<String> = row.get(1);
            let name: String = row.get(2);
            Foreign {
                described: row.get(0),
                alter: kind.map(|k| format!("ALTER {k} {name} OWNER TO {r}")),
                extension: row.get(3),
            }
        })
        .collect())
}

/// The schema's role, and whether it is being registered now: under the registry lock, the
/// existing registration (of the same scope), else a new role for an existing schema.
async fn role_for(
    tx: &Transaction<'_>,
    opts: &EnsureSchema<'_>,
    what: &dyn Fn() -> String,
) -> Result<(String, bool), ControlError> {
    Ok(match lock_and_find(tx, opts.schema, what).await? {
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
            let exists: bool = tx
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = $1)",
                    &[&opts.schema.as_str()],
                )
                .await
                .map_err(pg(what()))?
                .get(0);
            if !exists {
                return Err(ControlError::Host {
                    what: what(),
                    reason:
                        "no such schema in this database; `wasmig tenant create` makes a new one"
                            .into(),
                });
            }
            let role = create_schema_and_role(tx, opts, Existing::Take).await?;
            (role, true)
        }
    })
}

/// Adopts the schema `opts.schema`: creates its role (unless it was adopted before), gives it
/// the schema and every object in it, grants the application role, registers it. With
/// [`AdoptMode::DryRun`], or when an object cannot be moved, nothing is changed.
pub async fn adopt_schema(
    client: &mut tokio_postgres::Client,
    opts: &EnsureSchema<'_>,
    mode: AdoptMode,
) -> Result<Adopted, ControlError> {
    let schema = opts.schema;
    let what = || format!("adopting schema `{schema}`");
    let tx = client.transaction().await.map_err(pg(what()))?;
    let (role, register) = role_for(&tx, opts, &what).await?;
    let foreign = foreign_objects(&tx, schema.as_str(), &role, &what).await?;
    let refused: Vec<String> = foreign
        .iter()
        .filter_map(|f| match (&f.extension, &f.alter) {
            (Some(ext), _) => Some(format!(
                "{} belongs to extension `{ext}`, which must keep it",
                f.described
            )),
            (None, None) => Some(format!(
                "{}: wasmig does not transfer this kind of object; change its owner to the schema's role by hand or drop it",
                f.described
            )),
            (None, Some(_)) => None,
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
    let alters: Vec<String> = foreign.into_iter().filter_map(|f| f.alter).collect();
    if !alters.is_empty() {
        tx.batch_execute(&(alters.join(";\n") + ";"))
            .await
            .map_err(pg(what()))?;
    }
    // Checked, not assumed: whatever is still another role's refuses the schema.
    let left = foreign_objects(&tx, schema.as_str(), &role, &what).await?;
    if !left.is_empty() {
        return Ok(Adopted::Refused {
            objects: left
                .into_iter()
                .map(|f| format!("{} is still not owned by `{role}`", f.described))
                .collect(),
        });
    }
    if let Some(app) = opts.app_role {
        grant_app_role(&tx, schema, &role, app).await?;
    }
    tx.commit().await.map_err(pg(what()))?;
    Ok(Adopted::Done {
        role,
        registered: register,
        transferred: described,
    })
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
