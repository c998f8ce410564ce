//! The step transaction protocol, in one place: how a step's transaction opens (its
//! `BEGIN` rides with the plugin's first statement), what the host checks after every
//! plugin statement, and the SQL that finishes (record or unrecord, `COMMIT`) or undoes it.
//! [`super::sql::SqlSession`] drives the state while the plugin runs; the executor reads it
//! when the plugin returns and sends [`StepTx::finish_sql`] or [`StepTx::undo_sql`].
//!
//! Invariant: no plugin statement of a transactional step runs outside the step's own
//! transaction; once the state is [`TxState::Broken`] every later statement is refused.

use crate::control::step_sql::{BEFORE_CHECKS, Piece};
use crate::control::{CLEAN_SESSION, END_STEP};

/// Run after every plugin statement, in the same pipeline (no extra round trip): in a
/// transactional step it must name the step's own transaction.
pub(crate) const XID_SQL: &str = "SELECT pg_catalog.txid_current()::pg_catalog.text";
/// The same check for a non-transactional step: the statement must have run in an implicit
/// transaction of its own (`now()` is the transaction's start, so it equals the statement's
/// start only outside a transaction block).
pub(crate) const AUTOCOMMIT_SQL: &str = "SELECT (pg_catalog.now() OPERATOR(pg_catalog.=) pg_catalog.statement_timestamp())::pg_catalog.text";
/// [`XID_SQL`] that also checks the step's write bound (`max_write_mb`) first: it fails
/// with SQLSTATE 53400 when the step grew its schema past it.
const XID_GROWTH_SQL: &str =
    "SELECT pg_catalog.txid_current()::pg_catalog.text FROM wasmig_api.check_growth()";
/// [`AUTOCOMMIT_SQL`] with the write bound checked first.
const AUTOCOMMIT_GROWTH_SQL: &str = "SELECT (pg_catalog.now() OPERATOR(pg_catalog.=) pg_catalog.statement_timestamp())::pg_catalog.text FROM wasmig_api.check_growth()";
/// How often, at most, the write bound rides with the check after a plugin statement
/// (measuring a schema's files costs about half a millisecond; the bound is checked again
/// before the ledger row in any case).
const GROWTH_CHECK_EVERY: std::time::Duration = std::time::Duration::from_millis(250);
/// The SQLSTATE `wasmig.enforce_write_limit` raises.
const WRITE_LIMIT_SQLSTATE: &str = "53400";

/// Where a step's transaction stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TxState {
    /// Transactional, and the plugin has sent no SQL yet: `BEGIN` goes with its first
    /// statement, or with the ledger record if it sends none.
    Pending,
    /// The step's transaction is open; the server's id for it (`txid_current()`).
    Open(Option<String>),
    /// Non-transactional: every statement commits on its own.
    Autocommit,
    /// The step failed in a way that forbids any later statement.
    Broken {
        /// Why later statements are refused (shown to the plugin and the operator).
        why: String,
        /// A statement ended the step's transaction or left one open (not only failed to
        /// open it): earlier work may have committed without a ledger row.
        lost: bool,
    },
}

/// Whether the step's ledger row is written or removed when it finishes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum LedgerWrite {
    /// `apply`: record the step, which took this many milliseconds.
    Record(f64),
    /// `revert`: remove the step's row.
    Unrecord,
}

/// One step's transaction: its token, whether it is transactional, and its state.
#[derive(Debug, Clone)]
pub(crate) struct StepTx {
    transactional: bool,
    token: [u8; 32],
    state: TxState,
    /// Statements the plugin sent, for the message when one breaks the transaction.
    statements: u32,
    /// The step's write bound in MiB, and when it was last checked between statements.
    write_check: Option<(u64, std::time::Instant)>,
    /// The id of the transaction the step opened, kept when a statement breaks it: a
    /// transaction the plugin prepared is found by it.
    opened_xid: Option<String>,
}

impl StepTx {
    /// A step that has not started; `token` is its one-time grant.
    pub(crate) fn new(transactional: bool, token: [u8; 32]) -> Self {
        StepTx {
            transactional,
            token,
            state: if transactional {
                TxState::Pending
            } else {
                TxState::Autocommit
            },
            statements: 0,
            write_check: None,
            opened_xid: None,
        }
    }

    /// Checks the step's write bound (`max_write_mb`, in MiB) between its statements too, at
    /// most every [`GROWTH_CHECK_EVERY`], so a step writing past it stops early.
    pub(crate) fn with_write_check(mut self, limit_mb: u64) -> Self {
        self.write_check = Some((limit_mb, std::time::Instant::now()));
        self
    }

    /// Whether the step runs in one transaction.
    pub(crate) fn transactional(&self) -> bool {
        self.transactional
    }

    /// What opens the step for the object guard (the grant's tier becomes the session's
    /// until the step is recorded or rolled back); the token is a bound parameter.
    fn begin_step(&self) -> Piece {
        Piece::Begin(self.token)
    }

    /// What the host sends before the plugin runs: a non-transactional step is opened for
    /// the object guard at once (a transactional one opens with its `BEGIN`).
    pub(crate) fn opening(&self) -> Option<Vec<Piece>> {
        (!self.transactional).then(|| vec![self.begin_step()])
    }

    /// If the transaction is still to be opened, marks it as being opened and returns what
    /// opens it, in one round trip: `BEGIN`, `begin_step`, and the transaction's id (the
    /// last value). If `BEGIN` fails (a cancel at the step deadline can land on it) the
    /// host sends no plugin statement after it.
    pub(crate) fn take_begin(&mut self) -> Option<Vec<Piece>> {
        if self.state != TxState::Pending {
            return None;
        }
        self.state = TxState::Open(None);
        Some(vec![
            Piece::simple("BEGIN"),
            self.begin_step(),
            Piece::simple(XID_SQL),
        ])
    }

    /// The answer of the query that opened the transaction: its id, or the error that
    /// leaves it unknown whether it opened (a cancel at the step deadline can land on
    /// `BEGIN`), after which every later statement is refused.
    pub(crate) fn opened<E: std::fmt::Display>(&mut self, answer: &Result<Option<String>, E>) {
        match answer {
            Ok(xid) => {
                self.opened_xid.clone_from(xid);
                self.state = TxState::Open(xid.clone())
            }
            Err(e) => {
                self.state = TxState::Broken {
                    why: format!(
                        "an earlier statement of this step failed ({e}), so the step's transaction may not be open; return the error"
                    ),
                    lost: false,
                }
            }
        }
    }

    /// Counts one plugin statement (called when it is admitted).
    pub(crate) fn count_statement(&mut self) -> u32 {
        self.statements += 1;
        self.statements
    }

    /// Why later statements are refused, if they are.
    pub(crate) fn refusal(&self) -> Option<&str> {
        match &self.state {
            TxState::Broken { why, .. } => Some(why),
            _ => None,
        }
    }

    /// The id of the transaction the step opened, if it opened one.
    pub(crate) fn opened_xid(&self) -> Option<&str> {
        self.opened_xid.as_deref()
    }

    /// Whether a plugin statement ended the step's transaction or opened one of its own.
    pub(crate) fn lost(&self) -> bool {
        matches!(self.state, TxState::Broken { lost: true, .. })
    }

    /// The query to pipeline after a plugin statement; now and then it checks the write
    /// bound as well.
    pub(crate) fn check_sql(&mut self) -> &'static str {
        let growth = match &mut self.write_check {
            Some((_, last)) if last.elapsed() >= GROWTH_CHECK_EVERY => {
                *last = std::time::Instant::now();
                true
            }
            _ => false,
        };
        match (self.transactional, growth) {
            (true, false) => XID_SQL,
            (true, true) => XID_GROWTH_SQL,
            (false, false) => AUTOCOMMIT_SQL,
            (false, true) => AUTOCOMMIT_GROWTH_SQL,
        }
    }

    /// Judges the answer to [`Self::check_sql`] sent right after the plugin's latest
    /// statement: another transaction id (or an open block in a non-transactional step)
    /// breaks the step.
    /// `answer` is the check's value, or the SQLSTATE of its error.
    pub(crate) fn judge(&mut self, answer: Result<Option<&str>, Option<&str>>) {
        let expected = match (&self.state, self.transactional) {
            (TxState::Open(xid), true) => xid.clone(),
            (_, true) => None,
            (_, false) => Some("true".to_owned()),
        };
        if let (Err(Some(WRITE_LIMIT_SQLSTATE)), Some((limit, _))) = (answer, self.write_check)
            && !matches!(self.state, TxState::Broken { .. })
        {
            // The write bound stopped the step; its transaction is aborted, not lost.
            self.state = TxState::Broken {
                why: format!(
                    "the step grew its schema by more than its limit of {limit} MiB (max_write_mb) and was stopped; if it must write that much, raise the limit with --plugin-limit PLUGIN:max_write_mb=N"
                ),
                lost: false,
            };
            return;
        }
        let lost = match answer {
            Ok(got) => got != expected.as_deref(),
            // 25P02: the step's transaction is still there, aborted by the plugin's failed
            // statement. Any other failure of the check itself is not something to trust.
            Err(sqlstate) => sqlstate != Some("25P02"),
        };
        if !lost || matches!(self.state, TxState::Broken { .. }) {
            return;
        }
        let n = self.statements;
        let why = if self.transactional {
            format!(
                "statement {n} of the step ended the step's transaction (PostgreSQL reports another transaction after it); work the step did before it may have been committed without a ledger row: inspect the schema before rerunning"
            )
        } else {
            format!(
                "statement {n} of the step left a transaction block open; wasmig owns transaction boundaries, and the block was rolled back"
            )
        };
        self.state = TxState::Broken { why, lost: true };
    }

    /// The one round trip that finishes a step the plugin completed: `BEGIN` if the plugin
    /// sent no SQL, then [`BEFORE_CHECKS`] (no plugin code runs after it), the ledger write
    /// (consuming the one-time token; the server checks that the step is still open, runs in
    /// its own transaction, left nothing outside its schema and kept within its write bound),
    /// `COMMIT`, and the session clean-up.
    pub(crate) fn finish(&self, write: LedgerWrite) -> Vec<Piece> {
        let mut pieces = Vec::with_capacity(6);
        if self.state == TxState::Pending {
            pieces.push(Piece::simple("BEGIN"));
            pieces.push(self.begin_step());
        }
        let xid = match &self.state {
            TxState::Open(xid) => xid.clone(),
            _ => None,
        };
        pieces.push(Piece::simple(if self.transactional {
            BEFORE_CHECKS
        } else {
            // No transaction, so no deferred constraint: `SET CONSTRAINTS` would only warn.
            "RESET ALL; RESET ROLE; CLOSE ALL"
        }));
        pieces.push(match write {
            LedgerWrite::Record(ms) => Piece::Record {
                token: self.token,
                ms,
                xid,
            },
            LedgerWrite::Unrecord => Piece::Unrecord {
                token: self.token,
                xid,
            },
        });
        let commit = if self.transactional { "COMMIT; " } else { "" };
        pieces.push(Piece::simple(format!("{commit}{CLEAN_SESSION}")));
        pieces
    }

    /// What undoes a step that failed, so the next step starts clean: its transaction and
    /// any `SET` it made are rolled back, a block a non-transactional step left open is rolled
    /// back, and the step is closed for the object guard, forgetting the schema's size (the
    /// failed step may have grown its files), so the next step measures it afresh.
    pub(crate) fn undo(&self) -> Vec<Piece> {
        let rollback = if self.transactional || self.lost() {
            "ROLLBACK; "
        } else {
            ""
        };
        vec![Piece::simple(format!(
            "{rollback}RESET ALL; RESET ROLE; {END_STEP}; {CLEAN_SESSION}"
        ))]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn simple(p: &Piece) -> &str {
        match p {
            Piece::Simple(s) => s,
            other => panic!("expected simple SQL, got {other:?}"),
        }
    }

    #[test]
    fn a_transactional_step_opens_once_and_records_in_its_transaction() {
        let mut tx = StepTx::new(true, [7; 32]);
        assert_eq!(tx.opening(), None);
        let begin = tx.take_begin().unwrap();
        assert_eq!(simple(&begin[0]), "BEGIN");
        assert_eq!(begin[1], Piece::Begin([7; 32]));
        assert_eq!(tx.take_begin(), None, "BEGIN is sent once");
        tx.opened::<&str>(&Ok(Some("42".into())));
        tx.count_statement();
        tx.judge(Ok(Some("42")));
        assert_eq!(tx.refusal(), None);
        let finish = tx.finish(LedgerWrite::Record(1.5));
        assert_eq!(simple(&finish[0]), BEFORE_CHECKS, "no BEGIN again");
        assert_eq!(
            finish[1],
            Piece::Record {
                token: [7; 32],
                ms: 1.5,
                xid: Some("42".into())
            }
        );
        assert!(simple(&finish[2]).starts_with("COMMIT;"));
    }

    #[test]
    fn no_piece_carries_the_token_in_its_text() {
        let token = [0xab; 32];
        let hex: String = token.iter().map(|b| format!("{b:02x}")).collect();
        let mut tx = StepTx::new(true, token);
        let mut all = tx.take_begin().unwrap();
        all.extend(tx.finish(LedgerWrite::Record(1.0)));
        all.extend(tx.undo());
        all.extend(StepTx::new(false, token).opening().unwrap());
        for p in &all {
            if let Piece::Simple(sql) = p {
                assert!(!sql.contains(&hex), "{sql}");
            }
        }
    }

    #[test]
    fn a_step_that_sent_no_sql_opens_with_its_ledger_write() {
        let tx = StepTx::new(true, [1; 32]);
        let finish = tx.finish(LedgerWrite::Unrecord);
        assert_eq!(simple(&finish[0]), "BEGIN");
        assert_eq!(finish[1], Piece::Begin([1; 32]));
        assert_eq!(
            finish[3],
            Piece::Unrecord {
                token: [1; 32],
                xid: None
            }
        );
    }

    #[test]
    fn no_plugin_code_runs_after_the_checks() {
        // Cursors are closed and deferred constraints checked before the ledger write.
        let tx = StepTx::new(true, [1; 32]);
        let finish = tx.finish(LedgerWrite::Record(0.0));
        let before = finish
            .iter()
            .position(|p| matches!(p, Piece::Record { .. }))
            .unwrap();
        let sql: String = finish[..before]
            .iter()
            .filter_map(|p| match p {
                Piece::Simple(s) => Some(s.as_str()),
                _ => None,
            })
            .collect();
        assert!(sql.contains("CLOSE ALL") && sql.contains("SET CONSTRAINTS ALL IMMEDIATE"));
    }

    #[test]
    fn another_transaction_after_a_statement_breaks_the_step_for_good() {
        let mut tx = StepTx::new(true, [1; 32]);
        tx.take_begin();
        tx.opened::<&str>(&Ok(Some("10".into())));
        tx.count_statement();
        tx.count_statement();
        tx.judge(Ok(Some("11")));
        assert!(tx.lost());
        assert!(
            tx.refusal()
                .unwrap()
                .starts_with("statement 2 of the step ended")
        );
        // A later answer that looks right does not mend it.
        tx.judge(Ok(Some("10")));
        assert!(tx.lost());
        assert!(simple(&tx.undo()[0]).starts_with("ROLLBACK;"));
    }

    #[test]
    fn an_aborted_transaction_is_not_a_lost_one_but_other_check_errors_are() {
        let mut tx = StepTx::new(true, [1; 32]);
        tx.take_begin();
        tx.opened::<&str>(&Ok(Some("10".into())));
        tx.judge(Err(Some("25P02")));
        assert_eq!(tx.refusal(), None);
        tx.judge(Err(Some("57014")));
        assert!(tx.lost());
    }

    #[test]
    fn a_failed_opening_refuses_later_statements_without_claiming_a_lost_transaction() {
        let mut tx = StepTx::new(true, [1; 32]);
        tx.take_begin();
        tx.opened::<&str>(&Err("canceling statement due to user request"));
        assert!(tx.refusal().unwrap().contains("may not be open"));
        assert!(!tx.lost());
    }

    #[test]
    fn a_non_transactional_step_is_opened_first_and_closed_on_failure() {
        let mut tx = StepTx::new(false, [1; 32]);
        assert_eq!(tx.opening(), Some(vec![Piece::Begin([1; 32])]));
        assert_eq!(tx.take_begin(), None);
        assert!(
            !tx.finish(LedgerWrite::Record(0.0))
                .iter()
                .any(|p| matches!(p, Piece::Simple(s) if s.contains("COMMIT")))
        );
        let undo = tx.undo();
        assert!(simple(&undo[0]).starts_with("RESET ALL;") && simple(&undo[0]).contains(END_STEP));
        tx.count_statement();
        tx.judge(Ok(Some("false")));
        assert!(tx.lost());
        let undo = tx.undo();
        assert!(simple(&undo[0]).starts_with("ROLLBACK;") && simple(&undo[0]).contains(END_STEP));
    }
}
