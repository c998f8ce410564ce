//! The statements a schema role's session runs to take part in a step: recording it,
//! running its script, warming a fresh session up.

/// How a transactional step's script is sent: one statement, the script a bound parameter.
pub const RUN_SCRIPT_SQL: &str = "SELECT wasmig_api.run_script($1)";

/// Run once on a fresh schema-role session, before its first step: plans and runs
/// `begin_step` and `record_step` (with its step check) with a token that matches nothing
/// and compiles `run_script`, so the catalog
/// lookups of a new backend happen while another schema is being migrated rather than
/// inside the step's transaction. Changes nothing.
pub const WARM_UP_SQL: &str = "SELECT wasmig_api.begin_step(NULL); SELECT wasmig_api.record_step(NULL, 0, NULL); SELECT wasmig_api.run_script('SELECT 1')";

/// A one-time token as hex, for a `'\x...'::bytea` literal.
fn hex(token: &[u8; 32]) -> String {
    token.iter().map(|b| format!("{b:02x}")).collect()
}

/// The transaction id the step's record must run in, as SQL (`NULL`: not checked).
fn xid_literal(xid: Option<&str>) -> String {
    match xid {
        // The server's own `txid_current()` output: digits only, but quoted anyway.
        Some(x) if x.bytes().all(|b| b.is_ascii_digit()) => format!("'{x}'"),
        _ => "NULL".to_owned(),
    }
}

/// Opens a step for the object guard: the grant's capability tier becomes the session's
/// until the step is recorded or rolled back.
pub fn begin_step(token: &[u8; 32]) -> String {
    format!(
        "SELECT wasmig_api.begin_step('\\x{}'::pg_catalog.bytea)",
        hex(token)
    )
}

/// Ends the step for the object guard without recording it (a failed or non-transactional
/// step's cleanup).
pub const END_STEP: &str = "SELECT wasmig_api.begin_step(NULL)";

/// Records an applied step (consuming its one-time token): it took `ms`, inside transaction
/// `xid` when known; the server refuses another transaction and objects left outside the
/// schema.
pub fn record_step(token: &[u8; 32], ms: f64, xid: Option<&str>) -> String {
    format!(
        "SELECT wasmig_api.record_step('\\x{}'::pg_catalog.bytea, {ms:.3}, {})",
        hex(token),
        xid_literal(xid)
    )
}

/// Removes a reverted step's ledger row (consuming its one-time token), inside `xid`.
pub fn unrecord_step(token: &[u8; 32], xid: Option<&str>) -> String {
    format!(
        "SELECT wasmig_api.unrecord_step('\\x{}'::pg_catalog.bytea, {})",
        hex(token),
        xid_literal(xid)
    )
}

/// Sent after every step, outside its transaction: nothing a plugin left in the session
/// (temporary tables or views, which `pg_temp` puts first on the search path, cursors held
/// open) reaches the next plugin's step. `RESET ROLE` rides before it, since `RESET ALL` does
/// not reset the role.
pub const CLEAN_SESSION: &str = "DISCARD TEMP; CLOSE ALL;";

/// Runs a script already quoted as a literal (`$tag$...$tag$`), as one statement: what opens
/// a step together with its `BEGIN`.
pub fn run_script_quoted(quoted: &str) -> String {
    format!("SELECT wasmig_api.run_script({quoted}::pg_catalog.text)")
}
