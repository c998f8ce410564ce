//! The control schema `wasmig`, one concept per file: its layout and `init` ([`ddl`]), the
//! registry of managed schemas and their roles ([`registry`]), the ledger ([`ledger`]), runs
//! and failures ([`runs`]), operators' holds ([`holds`]), step grants ([`grants`]), advisory locks ([`locks`]), the
//! control secret ([`secret`]), the control side of backups and restores ([`restore`]), what a schema is made
//! of as the catalogs say ([`structure`], for `verify --structure`) and the statements schema roles run in a step ([`step_sql`]).
//! Every function runs on the operator's connection, except the [`step_sql`] statements, which
//! a schema role runs inside its step transaction. No SQL against `wasmig.*` is written
//! outside this module's files and `ddl.sql`.
//!
//! Architecture invariant: a schema role can add a ledger row only through
//! `wasmig.record_step`, and only with a one-time token the host created for exactly that
//! schema, plugin, step and checksum; it can read, change or delete nothing here.

mod adopt;
mod ddl;
mod grants;
mod holds;
mod ledger;
mod locks;
mod registry;
mod report;
mod restore;
mod runs;
mod secret;
mod server;
pub mod step_sql;
mod structure;

pub use adopt::*;
pub use ddl::*;
pub use grants::*;
pub use holds::*;
pub use ledger::*;
pub use locks::*;
pub use registry::*;
pub use report::*;
pub use restore::*;
pub use runs::*;
pub use secret::*;
pub use server::*;
pub use step_sql::{CLEAN_SESSION, END_STEP, RUN_SCRIPT_SQL, WARM_UP_SQL};
pub use structure::*;

use crate::db::PgError;

/// Version of the control schema layout this host creates and understands.
pub const CONTROL_VERSION: i32 = 7;

/// Advisory-lock class for wasmig (first key of the two-key form).
pub(crate) const LOCK_CLASS: i32 = 0x5741_534d; // "WASM"

/// First key of the advisory lock a runner holds on its own run for as long as it runs
/// (second key: the run id's low 31 bits). No such lock, no runner: a run without an end
/// whose lock is gone is shown as `abandoned`, not `running`.
pub(crate) const RUN_LOCK_CLASS: i32 = 0x5741_5352; // "WASR"

/// Lock key for control-schema DDL and registry changes.
pub(crate) const REGISTRY_LOCK: i32 = 0;

/// Errors at the control-schema boundary.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// A server error while doing `what`.
    #[error("{what}: {error}")]
    Pg {
        /// What wasmig was doing.
        what: String,
        /// What the server said.
        error: PgError,
    },
    /// Something wasmig itself found wrong while doing `what` (not a server error, so no
    /// SQLSTATE).
    #[error("{what}: {reason}")]
    Host {
        /// What wasmig was doing.
        what: String,
        /// What went wrong.
        reason: String,
    },
    /// `wasmig init` has not run on this database.
    #[error("the control schema `wasmig` does not exist in this database; run `wasmig init` first")]
    NotInitialised,
    /// The control schema is newer than this host.
    #[error(
        "the control schema is version {found}, newer than this wasmig understands ({CONTROL_VERSION}); upgrade wasmig"
    )]
    TooNew {
        /// Version found.
        found: i32,
    },
    /// The control schema was created by an older wasmig.
    #[error(
        "the control schema is version {found}, older than this wasmig uses ({CONTROL_VERSION}); run `wasmig init` to upgrade it (idempotent)"
    )]
    TooOld {
        /// Version found.
        found: i32,
    },
    /// A role wasmig wants to create already exists and is not its own.
    #[error(
        "role `{role}` already exists and is not managed by wasmig for schema `{schema}`; drop or rename that role, or choose another schema name"
    )]
    RoleTaken {
        /// The role.
        role: String,
        /// The schema it was meant for.
        schema: String,
    },
    /// A schema exists but wasmig does not manage it.
    #[error(
        "schema `{0}` already exists but is not registered with wasmig: to take over a schema another tool created (its objects, its migration history), run `wasmig tenant adopt {0}`; otherwise pick another name"
    )]
    SchemaTaken(String),
    /// A tenant name that is the shared schema.
    #[error("`{0}` is the shared schema, not a tenant")]
    SharedNotTenant(String),
    /// `wasmig.secret` holds a key of the wrong length (edited by hand, or damaged).
    #[error(
        "the control secret in `wasmig.secret` is {len} bytes long, not 32: it was changed outside wasmig; restore it from a backup (every role password and ledger MAC derives from it)"
    )]
    MalformedSecret {
        /// Its length.
        len: usize,
    },
    /// No such tenant.
    #[error("tenant `{0}` is not registered (see `wasmig tenant list`)")]
    UnknownTenant(String),
}

pub(crate) fn pg(what: impl Into<String>) -> impl FnOnce(tokio_postgres::Error) -> ControlError {
    let what = what.into();
    move |e| ControlError::Pg {
        what,
        error: e.into(),
    }
}
