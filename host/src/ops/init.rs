//! `wasmig init`: control schema plus shared schema and its role.

use anyhow::Result;

use super::Settings;
use crate::control::{self, EnsureSchema};
use crate::plan::Scope;

/// Options of `wasmig init`.
#[derive(Debug, Clone, Default)]
pub struct InitOptions {
    /// Give every tenant an application role of its own (kept for the database).
    pub tenant_app_roles: bool,
}

/// Creates or upgrades the control schema and the shared schema (idempotent).
pub async fn init(s: &Settings, o: &InitOptions) -> Result<()> {
    if o.tenant_app_roles && s.app_role.is_none() {
        anyhow::bail!(
            "--tenant-app-roles needs the application role: pass --app-role ROLE (or `app_role` in wasmig.toml)"
        );
    }
    let mut client = s.target.connect().await?;
    control::init(&mut client, s.target.dbname(), s.app_role.as_deref()).await?;
    let (ensured, role, _) = control::ensure_schema(
        &mut client,
        &EnsureSchema {
            schema: &s.shared_schema,
            scope: Scope::Shared,
            name: None,
            domain: None,
            dbname: s.target.dbname(),
            session: &s.limits.session,
            app_role: s.app_role.as_deref(),
            connection_limit: 8,
            labels: &crate::labels::Labels::new(),
        },
    )
    .await?;
    crate::report::notes::init_done(&s.shared_schema, ensured, &role);
    if let (true, Some(app)) = (o.tenant_app_roles, s.app_role.as_deref()) {
        let given = control::enable_tenant_app_roles(&mut client, s.target.dbname(), app).await?;
        crate::report::notes::tenant_app_roles_on(app, given);
    }
    Ok(())
}
