//! `wasmig tenant create | list | drop`.

use anyhow::{Result, bail};

use super::migrate::{MigrateOptions, ScopeFilter, migrate};
use super::{Settings, registry};
use crate::Exit;
use crate::control::{self, EnsureSchema};
use crate::labels::Labels;
use crate::names::SchemaName;
use crate::plan::{Scope, Selection};

/// Options of `tenant create`.
#[derive(Debug, Clone)]
pub struct CreateOptions {
    /// Schemas (name and domain apply when there is one).
    pub schemas: Vec<SchemaName>,
    /// Display name.
    pub name: Option<String>,
    /// Domain.
    pub domain: Option<String>,
    /// Apply tenant plugins afterwards.
    pub migrate: bool,
    /// Labels added to each tenant.
    pub labels: Labels,
    /// Dump each schema before it is migrated (one that already existed has data to lose).
    pub backup: Option<crate::backup::Policy>,
}

/// Validates a tenant schema name against the generic rules and the shared schema.
pub fn tenant_name(s: &Settings, raw: &str) -> Result<SchemaName> {
    let schema = SchemaName::parse(raw)?;
    if schema == s.shared_schema {
        bail!("`{schema}` is the shared schema and cannot be a tenant; choose another name");
    }
    Ok(schema)
}

/// Get-or-create tenants, then migrate them.
pub async fn create(s: &Settings, o: &CreateOptions) -> Result<Exit> {
    let mut client = s.connect_initialised().await?;
    for schema in &o.schemas {
        let (ensured, role, changed) = control::ensure_schema(
            &mut client,
            &EnsureSchema {
                schema,
                scope: Scope::Tenant,
                name: o.name.as_deref(),
                domain: o.domain.as_deref(),
                dbname: s.target.dbname(),
                session: &s.limits.session,
                app_role: s.app_role.as_deref(),
                connection_limit: 4,
                labels: &o.labels,
            },
        )
        .await?;
        if !s.quiet {
            crate::report::notes::tenant_ensured(schema, ensured, &role, &changed);
        }
    }
    if !o.migrate {
        return Ok(Exit::Ok);
    }
    migrate(
        s,
        &MigrateOptions {
            scope: ScopeFilter::TenantsOnly,
            schemas: o.schemas.clone(),
            selector: None,
            selection: Selection::default(),
            dry_run: false,
            output: crate::report::Output::Text,
            command: "tenant create".into(),
            backup: o.backup.clone(),
            max_failures: None,
            rollout: None,
            notify: s.notify.clone(),
        },
    )
    .await
}

/// Lists tenants.
pub async fn list(s: &Settings, out: crate::report::Output) -> Result<Exit> {
    let client = s.connect_initialised().await?;
    let tenants: Vec<_> = registry(&client, s)
        .await?
        .into_iter()
        .filter(|m| m.scope == Scope::Tenant)
        .collect();
    crate::report::print_tenants(&tenants, out);
    Ok(Exit::Ok)
}

/// Options of `tenant label`.
#[derive(Debug, Clone)]
pub struct LabelOptions {
    /// The tenants.
    pub schemas: Vec<SchemaName>,
    /// Labels to add (or change).
    pub set: Labels,
    /// Keys to remove.
    pub remove: Vec<String>,
}

/// Adds, changes and removes labels of tenants, all of them or none (an unknown tenant
/// refuses the command before anything changes).
pub async fn label(s: &Settings, o: &LabelOptions) -> Result<Exit> {
    let client = s.connect_initialised().await?;
    let reg = registry(&client, s).await?;
    super::require_tenants(&reg, &o.schemas)?;
    let missing = control::set_labels(&client, &o.schemas, &o.set, &o.remove).await?;
    if let Some(m) = missing.first() {
        bail!("tenant `{m}` was dropped meanwhile; the others were labelled");
    }
    crate::report::notes::labelled(&o.schemas, &o.set, &o.remove);
    Ok(Exit::Ok)
}

/// Drops a tenant (the caller has confirmed it).
pub async fn drop(s: &Settings, schema: &SchemaName) -> Result<Exit> {
    let mut client = s.connect_initialised().await?;
    let left = control::drop_tenant(&mut client, schema, s.target.dbname()).await?;
    crate::report::notes::tenant_dropped(schema);
    for object in left {
        tracing::warn!(
            "the tenant group role owns {object}, readable by every tenant; no wasmig step can leave such an object, so someone put it there outside wasmig: review and drop it"
        );
    }
    Ok(Exit::Ok)
}
