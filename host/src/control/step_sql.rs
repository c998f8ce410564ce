//! The statements a schema role's session runs to take part in a step: opening it, recording
//! it, running its script, warming a fresh session up. A step's one-time token only ever
//! travels as a bound parameter: it is never part of a query's text, which a plugin could
//! read back (`current_query()`, `pg_stat_activity`) or a driver log could record.

use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, SimpleQueryMessage};

use crate::db::PgError;

/// How a transactional step's script is sent: one statement, the script a bound parameter.
pub const RUN_SCRIPT_SQL: &str = "SELECT wasmig_api.run_script($1)";

/// Run once on a fresh schema-role session, before its first step: plans and runs
/// `begin_step` and `record_step` with a token that matches nothing and compiles
/// `run_script`, so the catalog lookups of a new backend happen while another schema is being
/// migrated rather than inside the step's transaction. Changes nothing.
pub const WARM_UP_SQL: &str = "SELECT wasmig_api.begin_step(NULL); SELECT wasmig_api.record_step(NULL, 0, NULL); SELECT wasmig_api.run_script('SELECT 1')";

/// Ends the step for the object guard without recording it (a failed step's cleanup), and
/// forgets the schema's size, so the session's next step measures it afresh.
pub const END_STEP: &str = "SELECT wasmig_api.begin_step(NULL)";

/// Sent after every step, outside its transaction: nothing a plugin left in the session
/// (temporary tables or views, which `pg_temp` puts first on the search path, cursors held
/// open) reaches the next plugin's step. `RESET ROLE` rides before it, since `RESET ALL` does
/// not reset the role.
pub const CLEAN_SESSION: &str = "DISCARD TEMP; CLOSE ALL;";

/// What runs before a step's checks and ledger write, inside its transaction: the session's
/// own settings again (the checks, the ledger write and `COMMIT` run under them, not under the
/// plugin's `search_path`, role or timeouts), every cursor closed (a cursor held open would
/// run its query at `COMMIT`, after the checks) and every deferred constraint checked now (a
/// deferred trigger would otherwise run at `COMMIT`, after the checks, as whoever commits).
/// So no code of the plugin's runs after the checks.
pub const BEFORE_CHECKS: &str = "RESET ALL; RESET ROLE; CLOSE ALL; SET CONSTRAINTS ALL IMMEDIATE";

/// One piece of a step's protocol. The pieces of one round trip are sent pipelined; each
/// is a request of its own, so inside a transaction block a failed piece aborts the block
/// and the pieces after it fail too (a `COMMIT` after a failure rolls back).
#[derive(Debug, Clone, PartialEq)]
pub enum Piece {
    /// Statements without parameters, `;`-separated (simple protocol).
    Simple(String),
    /// `wasmig_api.begin_step(token)`.
    Begin([u8; 32]),
    /// `wasmig_api.record_step(token, ms, xid)`: the step took `ms`; `xid` is the
    /// transaction its SQL ran in, when known (the server refuses another).
    Record {
        /// The step's one-time token.
        token: [u8; 32],
        /// How long the step took, milliseconds.
        ms: f64,
        /// `txid_current()` of the step's transaction.
        xid: Option<String>,
    },
    /// `wasmig_api.unrecord_step(token, xid)`: a reverted step's row goes.
    Unrecord {
        /// The step's one-time token.
        token: [u8; 32],
        /// `txid_current()` of the step's transaction.
        xid: Option<String>,
    },
}

impl Piece {
    /// Statements without parameters.
    pub fn simple(sql: impl Into<String>) -> Piece {
        Piece::Simple(sql.into())
    }

    /// Sends the piece; returns the first column of the last row it returned, as text.
    async fn run(&self, client: &Client) -> Result<Option<String>, tokio_postgres::Error> {
        let token_param = |t: &[u8; 32]| t.to_vec();
        match self {
            Piece::Simple(sql) => {
                let messages = client.simple_query(sql).await?;
                Ok(messages.iter().rev().find_map(|m| match m {
                    SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
                    _ => None,
                }))
            }
            Piece::Begin(token) => {
                let t = token_param(token);
                let params: [(&(dyn ToSql + Sync), Type); 1] = [(&t, Type::BYTEA)];
                client
                    .query_typed("SELECT wasmig_api.begin_step($1)", &params)
                    .await
                    .map(|_| None)
            }
            Piece::Record { token, ms, xid } => {
                let t = token_param(token);
                let params: [(&(dyn ToSql + Sync), Type); 3] =
                    [(&t, Type::BYTEA), (ms, Type::FLOAT8), (xid, Type::TEXT)];
                client
                    .query_typed("SELECT wasmig_api.record_step($1, $2, $3)", &params)
                    .await
                    .map(|_| None)
            }
            Piece::Unrecord { token, xid } => {
                let t = token_param(token);
                let params: [(&(dyn ToSql + Sync), Type); 2] =
                    [(&t, Type::BYTEA), (xid, Type::TEXT)];
                client
                    .query_typed("SELECT wasmig_api.unrecord_step($1, $2)", &params)
                    .await
                    .map(|_| None)
            }
        }
    }
}

/// Sends `pieces` in one round trip (pipelined, in order) and waits for all of them. Returns
/// the last value the last piece returned, or the first error (a later piece's error is the
/// consequence of an earlier one inside a transaction block).
pub async fn run_pieces(client: &Client, pieces: &[Piece]) -> Result<Option<String>, PgError> {
    let answers = futures_util::future::join_all(pieces.iter().map(|p| p.run(client))).await;
    let mut last = None;
    for a in answers {
        last = a.map_err(PgError::from)?;
    }
    Ok(last)
}
