//! `wasmig init`: control schema plus shared schema and its role.

use anyhow::Result;

use super::Settings;
use crate::control::{self, EnsureSchema};
use crate::plan::Scope;

/// Creates or upgrades the control schema and the shared schema (idempotent).
pub async fn init(s: &Settings) -> Result<()> {
    let mut client = s.target.connect().await?;
    control::init(&mut client, s.target.dbname(), s.app_role.as_deref()).await?;
    let (ensured, role) = control::ensure_schema(
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
    Ok(())
}
