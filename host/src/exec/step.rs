//! One step on a schema role's session: open it, call the plugin, then finish it (ledger
//! write and `COMMIT` in one round trip) or undo it. The same path serves `apply` and
//! `revert`; the transaction protocol itself is [`crate::plugin::tx::StepTx`].

use std::sync::Arc;
use std::time::Instant;

use tokio_postgres::Client;

use super::Fleet;
use crate::control::GrantAction;
use crate::control::step_sql::{Piece, run_pieces};
use crate::db::PgError;
use crate::names::SchemaName;
use crate::plan::PendingStep;
use crate::plugin::sql::{FailedStatement, SqlSession};
use crate::plugin::tx::{LedgerWrite, StepTx};
use crate::plugin::wit::{Export, StepError};

/// Why a step failed, as wasmig shows and stores it.
#[derive(Debug, Default)]
pub(crate) struct StepFailure {
    pub(crate) sqlstate: Option<String>,
    pub(crate) message: String,
    /// The failing line with a caret under the error position (host-made, already inert).
    context: Option<String>,
    /// The server's DETAIL and HINT lines.
    detail: Option<String>,
    hint: Option<String>,
}

impl StepFailure {
    /// A failure wasmig itself describes.
    fn host(message: String) -> Self {
        StepFailure {
            message,
            ..StepFailure::default()
        }
    }

    /// A failure of the host's own statement `what` on the step's session.
    fn session(what: &str, e: SessionError) -> Self {
        match e {
            SessionError::Pg(e) => StepFailure {
                message: format!("{what} failed: {}", e.message),
                sqlstate: e.sqlstate,
                ..StepFailure::default()
            },
            SessionError::Timeout(_) => StepFailure::host(format!("{what} failed: {e}")),
        }
    }

    /// The failure as wasmig shows and stores it. Its text may come from the plugin (its own
    /// error, its panic message, or SQL error text it raised), so control characters are
    /// made visible and the length is capped; a SQLSTATE that is not five digits or capital
    /// letters is not one.
    pub(crate) fn inert(self) -> StepFailure {
        let message = self.shown();
        StepFailure {
            sqlstate: self.sqlstate.filter(|c| {
                c.len() == 5
                    && c.bytes()
                        .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase())
            }),
            message,
            ..StepFailure::default()
        }
    }

    /// The message, then as psql shows them: the line with its caret, DETAIL, HINT, each on
    /// a line of its own (every part inert on its own, so none can add lines).
    fn shown(&self) -> String {
        let cap = crate::text::MAX_ERROR_CHARS;
        let mut out = crate::text::inert(&self.message, cap);
        for line in self.context.iter().flat_map(|c| c.lines()) {
            out.push_str("\n  ");
            out.push_str(line);
        }
        for (label, text) in [("DETAIL", &self.detail), ("HINT", &self.hint)] {
            if let Some(t) = text {
                out.push_str(&format!("\n  {label}: {}", crate::text::inert(t, cap)));
            }
        }
        out
    }

    /// A lock the step could not get in time, a deadlock it lost or a serialization failure:
    /// the server rolled it back for a reason that may be gone on another attempt.
    pub(crate) fn is_retryable(&self) -> bool {
        matches!(self.sqlstate.as_deref(), Some("55P03" | "40P01" | "40001"))
    }
}

/// Why a statement the host sent on the step's session failed.
#[derive(Debug)]
enum SessionError {
    /// The server's error.
    Pg(PgError),
    /// The server did not answer within the step's time limit (in seconds).
    Timeout(f64),
}

impl std::fmt::Display for SessionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SessionError::Pg(e) => write!(f, "{}", e.message),
            SessionError::Timeout(secs) => write!(
                f,
                "PostgreSQL did not finish within {secs}s; the statement was cancelled"
            ),
        }
    }
}

/// The step a call runs: which one, where, and with which one-time grant.
pub(crate) struct StepCall<'a> {
    pub(crate) step: PendingStep,
    pub(crate) schema: &'a SchemaName,
    pub(crate) token: &'a [u8; 32],
    pub(crate) action: GrantAction,
}

impl Fleet {
    /// One step, `apply` or `revert`: the plugin's SQL (the transaction's `BEGIN` rides with
    /// its first statement), then the ledger write, `COMMIT` and clean-up in one round trip;
    /// on failure, the undo (and a rollback of any transaction the plugin prepared).
    pub(crate) async fn run_step(
        &self,
        client: &Arc<Client>,
        call: &StepCall<'_>,
    ) -> Result<(), StepFailure> {
        let (pl, st) = self.step(&call.step);
        // A revert always runs in one transaction with the removal of its row.
        let transactional = st.transactional || call.action == GrantAction::Revert;
        let started = Instant::now();
        let role = self.roles.get(call.schema).map_or("", String::as_str);
        self.watch
            .start(role, self.plugins.limits(call.step.plugin).max_locks);
        let tx = StepTx::new(transactional, *call.token)
            .with_write_check(self.plugins.limits(call.step.plugin).max_write_mb);
        let (tx, called) = self.call_plugin(client, call, tx).await;
        let outcome = match called {
            Ok(()) => {
                let write = match call.action {
                    // The grant says whether the row is written or rewritten.
                    GrantAction::Apply | GrantAction::Rerun => {
                        LedgerWrite::Record(started.elapsed().as_secs_f64() * 1000.0)
                    }
                    GrantAction::Revert => LedgerWrite::Unrecord,
                };
                let what = match write {
                    LedgerWrite::Record(_) => "recording and committing the step",
                    LedgerWrite::Unrecord => "removing the step from the ledger",
                };
                self.bounded(client, &tx.finish(write))
                    .await
                    .map_err(|e| StepFailure::session(what, e))
            }
            Err(f) => Err(f),
        };
        if outcome.is_err() {
            if let Err(e) = self.bounded(client, &tx.undo()).await {
                // The session is then unusable; the next step's statements say so.
                tracing::debug!("{}: undoing the failed step failed: {e}", call.schema);
            }
            if tx.lost()
                && let Some(xid) = tx.opened_xid()
            {
                self.roll_back_prepared(client, call.schema, xid).await;
            }
        }
        tracing::trace!(
            "{}: {}/{} took {:?}",
            call.schema,
            pl.name,
            st.id,
            started.elapsed()
        );
        match (self.watch.finish(role), outcome) {
            // The watchdog ended the session: that, not the broken connection, is the cause.
            (Some(over), Err(_)) => Err(StepFailure::host(over.message())),
            (_, outcome) => outcome,
        }
    }

    /// A plugin statement ended the step's transaction: a `PREPARE TRANSACTION` it slipped
    /// through would otherwise keep its locks and changes pending after the session ends.
    /// The transaction the step opened is found by its id (`xid`), whoever it says owns it
    /// (the role it was prepared as: the schema's role or a group it may act as), and rolled
    /// back as that owner.
    async fn roll_back_prepared(&self, client: &Client, schema: &SchemaName, xid: &str) {
        let prepared = client
            .query(
                // `txid_current()` carries the epoch; a prepared transaction's id does not.
                "SELECT gid, owner::text FROM pg_catalog.pg_prepared_xacts
                  WHERE transaction::text = ($1::text::bigint % 4294967296)::text
                    AND database = pg_catalog.current_database()",
                &[&xid],
            )
            .await;
        for row in prepared.into_iter().flatten() {
            let (gid, owner): (String, String) = (row.get(0), row.get(1));
            let Some(gid_lit) = crate::db::quote::literal(&gid) else {
                continue;
            };
            // Each its own statement: `ROLLBACK PREPARED` may not run in a transaction block,
            // which a multi-statement query is.
            let pieces = [
                Piece::Simple(format!("SET ROLE {}", crate::db::quote::ident(&owner))),
                Piece::Simple(format!("ROLLBACK PREPARED {gid_lit}")),
                Piece::simple("RESET ROLE"),
            ];
            match self.bounded(client, &pieces).await {
                Ok(()) => tracing::warn!(
                    "{schema}: rolled back a transaction the plugin prepared ({})",
                    crate::text::inert(&gid, 80)
                ),
                Err(e) => tracing::error!(
                    "{schema}: could not roll back a transaction the plugin prepared: {e}"
                ),
            }
        }
    }

    /// Opens the step if it needs opening first, instantiates the plugin in a fresh store
    /// and calls `apply` or `revert`. Returns the step's transaction as the plugin left it.
    async fn call_plugin(
        &self,
        client: &Arc<Client>,
        call: &StepCall<'_>,
        tx: StepTx,
    ) -> (StepTx, Result<(), StepFailure>) {
        let (pl, st) = self.step(&call.step);
        let limits = self.plugins.limits(call.step.plugin);
        if let Some(open) = tx.opening()
            && let Err(e) = self.bounded(client, &open).await
        {
            return (tx, Err(StepFailure::session("opening the step", e)));
        }
        let session = SqlSession::new(client.clone(), tx.clone(), limits);
        let mut store = self.runtime.store(
            format!("{}@{}", pl.name, call.schema),
            Some(session),
            limits,
        );
        let plugin = self.plugins.loaded(call.step.plugin);
        let export = match call.action {
            GrantAction::Apply | GrantAction::Rerun => Export::Apply,
            GrantAction::Revert => Export::Revert,
        };
        let called = plugin.pre.call(&mut store, export, &st.id).await;
        store.data().flush_output(if called.is_err() {
            crate::plugin::Flush::StdoutOnly
        } else {
            crate::plugin::Flush::Both
        });
        let session = store.data().sql.as_ref();
        let tx = session.map_or(tx, |s| s.tx().clone());
        if tx.lost() {
            // Whatever the plugin made of the refusal, the step has failed.
            let why = tx.refusal().unwrap_or_default().to_owned();
            return (tx, Err(StepFailure::host(why)));
        }
        let result = match called {
            Ok(Ok(())) => match tx.refusal() {
                // Its later statements were refused: the step failed even if the plugin
                // swallowed that error (its transaction may never have opened).
                Some(why) => Err(StepFailure::host(why.to_owned())),
                None => Ok(()),
            },
            Ok(Err(StepError::Irreversible)) if call.action == GrantAction::Revert => {
                Err(StepFailure::host(format!(
                    "step `{}` of plugin `{}` is irreversible (it declares no revert); it and the steps before it stay applied",
                    st.id, pl.name
                )))
            }
            Ok(Err(e)) => Err(step_error(
                e,
                session.and_then(SqlSession::failed_statement).as_ref(),
            )),
            Err(trap) => Err(StepFailure::host(
                store.data().describe_failure(&trap, limits),
            )),
        };
        (tx, result)
    }

    /// Runs `pieces` on a schema-role session, in one round trip, within the step time limit;
    /// past it the statement is cancelled server-side (a deferred trigger must not hold the
    /// schema's lock forever).
    async fn bounded(&self, client: &Client, pieces: &[Piece]) -> Result<(), SessionError> {
        let limit = self.runtime.limits().step_timeout;
        match tokio::time::timeout(limit, run_pieces(client, pieces)).await {
            Ok(r) => r.map(drop).map_err(SessionError::Pg),
            Err(_) => {
                if let Err(e) = client
                    .cancel_token()
                    .cancel_query(tokio_postgres::NoTls)
                    .await
                {
                    tracing::warn!("could not cancel a statement past the step limit: {e}");
                }
                Err(SessionError::Timeout(limit.as_secs_f64()))
            }
        }
    }
}

/// The failure a plugin returned. When it is the server's error the host last saw in this
/// step, the failing line with a caret comes from the host's own record (the plugin only
/// chooses whether to return it).
fn step_error(e: StepError, placed: Option<&FailedStatement>) -> StepFailure {
    match e {
        StepError::Sql(s) => {
            let context = placed
                .filter(|f| f.message == s.message)
                .map(|f| f.caret.clone());
            StepFailure {
                sqlstate: s.sqlstate,
                message: s.message,
                context,
                detail: s.detail,
                hint: s.hint,
            }
        }
        StepError::Failed(m) => StepFailure::host(m),
        StepError::UnknownStep(id) => StepFailure::host(format!(
            "the plugin does not know step `{}` although its manifest lists it",
            crate::text::inert(&id, 200)
        )),
        StepError::Irreversible => {
            StepFailure::host("the plugin answered `irreversible` to apply".into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shown_failure_keeps_caret_detail_and_hint_on_lines_of_their_own() {
        let f = StepFailure {
            sqlstate: Some("42601".into()),
            message: "syntax error at or near \"TABEL\"".into(),
            context: Some("LINE 1: CREATE TABEL t ()\n               ^".into()),
            detail: Some("two\nlines".into()),
            hint: Some("fix it".into()),
        }
        .inert();
        let lines: Vec<&str> = f.message.lines().collect();
        assert_eq!(lines[0], "syntax error at or near \"TABEL\"");
        assert_eq!(lines[1], "  LINE 1: CREATE TABEL t ()");
        assert!(lines[3].starts_with("  DETAIL: two") && !lines[3].contains('\n'));
        assert_eq!(lines[4], "  HINT: fix it");
        assert_eq!(lines.len(), 5, "{}", f.message);
        assert_eq!(f.sqlstate.as_deref(), Some("42601"));
    }

    #[test]
    fn a_sqlstate_that_is_not_five_digits_or_capitals_is_dropped() {
        for bad in ["4260", "42601x", "4260a", "42\n01"] {
            let f = StepFailure {
                sqlstate: Some(bad.into()),
                ..StepFailure::host("m".into())
            }
            .inert();
            assert_eq!(f.sqlstate, None, "{bad:?}");
        }
    }
}
