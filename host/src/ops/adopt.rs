//! `wasmig tenant adopt`: take over schemas another tool created (django-tenants and the like),
//! each in one transaction; a schema that cannot be taken over is refused alone, with the
//! objects at fault named, and the others go on.

use anyhow::{Context as _, Result, bail};
use tokio_postgres::Client;

use super::Settings;
use crate::Exit;
use crate::control::{self, AdoptMode, Adopted, EnsureSchema};
use crate::names::SchemaName;
use crate::plan::Scope;

/// One schema to adopt, with its registry details.
#[derive(Debug, Clone)]
pub struct AdoptTarget {
    /// The schema.
    pub schema: SchemaName,
    /// Display name.
    pub name: Option<String>,
    /// Domain.
    pub domain: Option<String>,
}

/// Which schemas `tenant adopt` takes over.
#[derive(Debug, Clone)]
pub enum AdoptSource {
    /// These tenants, named on the command line.
    Schemas(Vec<AdoptTarget>),
    /// The rows of an operator's query: `schema_name`, optional `name` and `domain` columns.
    Query(String),
    /// The shared schema (`--shared-schema`).
    Shared,
}

/// Options of `tenant adopt`.
#[derive(Debug, Clone)]
pub struct AdoptOptions {
    /// What to adopt.
    pub source: AdoptSource,
    /// Change nothing; say what would change.
    pub mode: AdoptMode,
}

/// Adopts every target; exit 1 when one was refused.
pub async fn adopt(s: &Settings, o: &AdoptOptions) -> Result<Exit> {
    let mut client = s.connect_initialised().await?;
    let (targets, scope) = match &o.source {
        AdoptSource::Schemas(t) => (t.clone(), Scope::Tenant),
        AdoptSource::Query(sql) => (targets_from_query(&client, s, sql).await?, Scope::Tenant),
        AdoptSource::Shared => (
            vec![AdoptTarget {
                schema: s.shared_schema.clone(),
                name: None,
                domain: None,
            }],
            Scope::Shared,
        ),
    };
    if targets.is_empty() {
        bail!("no schema to adopt: the query returned no rows");
    }
    let mut refused = 0;
    for t in &targets {
        let opts = EnsureSchema {
            schema: &t.schema,
            scope,
            name: t.name.as_deref(),
            domain: t.domain.as_deref(),
            dbname: s.target.dbname(),
            session: &s.limits.session,
            app_role: s.app_role.as_deref(),
            connection_limit: if scope == Scope::Shared { 8 } else { 4 },
        };
        match control::adopt_schema(&mut client, &opts, o.mode).await {
            Ok(adopted) => {
                if matches!(adopted, Adopted::Refused { .. }) {
                    refused += 1;
                }
                crate::report::notes::adopted(&t.schema, &adopted);
            }
            Err(e) => {
                refused += 1;
                crate::errln!("error: schema `{}`: {e}", t.schema);
            }
        }
    }
    crate::report::notes::adopt_summary(targets.len(), refused, o.mode);
    Ok(if refused == 0 {
        Exit::Ok
    } else {
        Exit::Problems
    })
}

/// The targets the operator's query names (columns by name: `schema_name`, and optionally
/// `name` and `domain`).
async fn targets_from_query(client: &Client, s: &Settings, sql: &str) -> Result<Vec<AdoptTarget>> {
    let rows = client
        .simple_query(sql)
        .await
        .map_err(crate::db::PgError::from)
        .context("running --from-query")?;
    let mut targets = Vec::new();
    let rows = rows.iter().filter_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(r) => Some(r),
        _ => None,
    });
    for (i, row) in rows.enumerate() {
        let col = |name: &str| {
            row.columns()
                .iter()
                .position(|c| c.name() == name)
                .and_then(|p| row.get(p))
                .map(str::to_owned)
        };
        if !row.columns().iter().any(|c| c.name() == "schema_name") {
            bail!(
                "--from-query returns no `schema_name` column (columns are read by name: schema_name, and optionally name and domain)"
            );
        }
        let raw = col("schema_name")
            .with_context(|| format!("--from-query row {}: `schema_name` is NULL", i + 1))?;
        let schema = super::tenant::tenant_name(s, &raw)
            .with_context(|| format!("--from-query row {}", i + 1))?;
        targets.push(AdoptTarget {
            schema,
            name: col("name"),
            domain: col("domain"),
        });
    }
    Ok(targets)
}
