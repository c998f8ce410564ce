//! The `sql` capability: what a plugin's `execute`, `query` and `batch` calls do. Statements
//! run on the schema role's own connection (the server enforces what it may touch); the
//! host adds only what the server cannot: no transaction control inside a step, and bounds
//! on statements, rows and bytes.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, NoTls};

use super::StepCtx;
use super::bindings::wasmig::plugin0_1_0::sql::Host;
use super::bindings::wasmig::plugin0_1_0::types::{Rows, SqlError, Value};
use super::rows::{TextParam, run_query};
use super::tx::{AUTOCOMMIT_SQL, StepTx};
use crate::db::PgError;

/// A plugin's SQL session for one step.
pub struct SqlSession {
    client: Arc<Client>,
    /// The step's transaction: its state, and the SQL of the protocol.
    tx: StepTx,
    max_statements: u32,
    max_rows: usize,
    max_bytes: usize,
    deadline: Instant,
    timeout_secs: f64,
    /// Where the server placed the last error.
    failed: FailureSlot,
}

impl SqlSession {
    /// A session on `client` for the step `tx`. Every call must finish by the step's
    /// deadline (`limits.step_timeout` from now).
    pub(crate) fn new(client: Arc<Client>, tx: StepTx, limits: &super::Limits) -> Self {
        SqlSession {
            client,
            tx,
            max_statements: limits.max_statements,
            max_rows: limits.max_result_rows,
            max_bytes: limits.max_result_bytes,
            deadline: Instant::now() + limits.step_timeout,
            timeout_secs: limits.step_timeout.as_secs_f64(),
            failed: FailureSlot::default(),
        }
    }

    /// The step's transaction as the plugin left it.
    pub(crate) fn tx(&self) -> &StepTx {
        &self.tx
    }

    /// Where the server placed the last error of this step's statements, if it did.
    pub fn failed_statement(&self) -> Option<FailedStatement> {
        self.failed.get()
    }

    /// Opens the step's transaction before the first extended-protocol statement.
    async fn begin_if_pending(&mut self) -> Result<(), SqlError> {
        if let Some(begin) = self.tx.take_begin() {
            let client = self.client.clone();
            let opened = self
                .guarded(async {
                    crate::control::step_sql::run_pieces(&client, &begin)
                        .await
                        .map_err(SqlError::from)
                })
                .await;
            self.tx
                .opened(&opened.as_ref().map_err(|e| &e.message).cloned());
            opened?;
        }
        Ok(())
    }

    /// Runs `fut` against the step deadline. The plugin can change `statement_timeout` in its
    /// own session, so the host enforces the deadline itself and cancels the query server-side.
    async fn guarded<T>(
        &self,
        fut: impl Future<Output = Result<T, SqlError>>,
    ) -> Result<T, SqlError> {
        match tokio::time::timeout_at(self.deadline.into(), fut).await {
            Ok(r) => r,
            Err(_) => {
                let _ = self.client.cancel_token().cancel_query(NoTls).await;
                Err(host_error(format!(
                    "the step exceeded its time limit of {}s while waiting for PostgreSQL; the statement was cancelled",
                    self.timeout_secs
                )))
            }
        }
    }

    fn admit(&mut self, statement: &str) -> Result<(), SqlError> {
        if let Some(why) = self.tx.refusal() {
            return Err(host_error(why.to_owned()));
        }
        if statement.contains('\0') {
            return Err(host_error(
                "the statement contains a NUL byte, which PostgreSQL cannot take".into(),
            ));
        }
        if self.tx.count_statement() > self.max_statements {
            return Err(host_error(format!(
                "the step sent more than {} statements, the limit per step (max_statements)",
                self.max_statements
            )));
        }
        if let Some(why) = super::classify::refusal(statement)
            && !text_filter_off_for_tests()
        {
            return Err(host_error(why));
        }
        Ok(())
    }
}

/// Debug builds only (the integration tests): `WASMIG_TEST_SKIP_TEXT_FILTER=1` lets
/// transaction control through the host's text filter, so the tests can show that the
/// server-side check after every statement catches what a filter might miss. Release builds
/// always filter.
fn text_filter_off_for_tests() -> bool {
    cfg!(debug_assertions) && std::env::var_os("WASMIG_TEST_SKIP_TEXT_FILTER").is_some()
}

/// Where PostgreSQL placed the last error of a step's statements: the failing line with a
/// caret, rendered when the error arrives (only a window of the statement is kept, however
/// long the statement). Kept by the host (the plugin only ever sees the message), so what the
/// operator reads about where a step failed cannot be forged by the plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedStatement {
    /// The line with its caret (`text::caret`), inert.
    pub caret: String,
    /// The server's message, to match the error the plugin returned.
    pub message: String,
}

/// Where a session keeps its [`FailedStatement`].
#[derive(Debug, Clone, Default)]
struct FailureSlot(Arc<std::sync::Mutex<Option<FailedStatement>>>);

impl FailureSlot {
    /// Converts a driver error for the plugin, noting where in `sent` (or in the query run
    /// inside it) the server placed it; when the server gave no position (most DDL), where
    /// in `source` (the plugin's own text: `sent`, or the script `sent` runs) the name the
    /// message quotes stands, if it stands there once.
    fn pg<'a>(
        &'a self,
        sent: &'a str,
        source: &'a str,
    ) -> impl Fn(tokio_postgres::Error) -> SqlError + 'a {
        move |e| {
            if let Some(db) = e.as_db_error() {
                let at = match db.position() {
                    Some(tokio_postgres::error::ErrorPosition::Original(p)) => Some((sent, *p)),
                    Some(tokio_postgres::error::ErrorPosition::Internal { position, query }) => {
                        Some((query.as_str(), *position))
                    }
                    None => crate::text::locate_named(source, db.message()).map(|p| (source, p)),
                };
                if let Some((text, position)) = at
                    && let Some(caret) = crate::text::caret(text, position)
                    && let Ok(mut slot) = self.0.lock()
                {
                    *slot = Some(FailedStatement {
                        caret,
                        message: db.message().to_owned(),
                    });
                }
            }
            pg_err(e)
        }
    }

    fn get(&self) -> Option<FailedStatement> {
        self.0.lock().ok().and_then(|s| s.clone())
    }
}

pub(super) fn host_error(message: String) -> SqlError {
    SqlError {
        sqlstate: None,
        message,
        detail: None,
        hint: None,
    }
}

impl From<PgError> for SqlError {
    fn from(e: PgError) -> Self {
        SqlError {
            sqlstate: e.sqlstate,
            message: e.message,
            detail: e.detail,
            hint: e.hint,
        }
    }
}

fn no_session() -> SqlError {
    host_error("SQL is not available while the host reads the manifest".into())
}

impl StepCtx {
    /// The step's session for one plugin statement: admitted (bounds, transaction control)
    /// and with the step's transaction open.
    async fn session_for(&mut self, statement: &str) -> Result<&mut SqlSession, SqlError> {
        let s = self.sql.as_mut().ok_or_else(no_session)?;
        s.admit(statement)?;
        s.begin_if_pending().await?;
        Ok(s)
    }
}

impl Host for StepCtx {
    async fn execute(
        &mut self,
        statement: String,
        params: Vec<Value>,
    ) -> wasmtime::Result<Result<u64, SqlError>> {
        let s = match self.session_for(&statement).await {
            Ok(s) => s,
            Err(e) => return Ok(Err(e)),
        };
        let ps: Vec<TextParam<'_>> = params.iter().map(TextParam).collect();
        let refs: Vec<&(dyn ToSql + Sync)> = ps.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
        let client = s.client.clone();
        let failed = s.failed.clone();
        let check = s.tx.check_sql();
        let (ran, answer) = s
            .guarded_pair(async {
                let stmt = client
                    .prepare(&statement)
                    .await
                    .map_err(failed.pg(&statement, &statement))?;
                // The check is queued right behind the statement: one round trip for both.
                let (ran, answer) = futures_util::future::join(
                    client.execute(&stmt, &refs),
                    simple_last_value(&client, check),
                )
                .await;
                Ok((ran.map_err(failed.pg(&statement, &statement)), answer))
            })
            .await;
        s.judge_after(answer);
        Ok(s.refuse_if_broken(ran))
    }

    async fn query(
        &mut self,
        statement: String,
        params: Vec<Value>,
    ) -> wasmtime::Result<Result<Rows, SqlError>> {
        let s = match self.session_for(&statement).await {
            Ok(s) => s,
            Err(e) => return Ok(Err(e)),
        };
        let ps: Vec<TextParam<'_>> = params.iter().map(TextParam).collect();
        let (max_rows, max_bytes) = (s.max_rows, s.max_bytes);
        let client = s.client.clone();
        let failed = s.failed.clone();
        let check = s.tx.check_sql();
        let (ran, answer) = s
            .guarded_pair(async {
                let stmt = client
                    .prepare(&statement)
                    .await
                    .map_err(failed.pg(&statement, &statement))?;
                let (ran, answer) = futures_util::future::join(
                    run_query(
                        &client,
                        &stmt,
                        &ps,
                        max_rows,
                        max_bytes,
                        failed.pg(&statement, &statement),
                    ),
                    simple_last_value(&client, check),
                )
                .await;
                Ok((ran, answer))
            })
            .await;
        s.judge_after(answer);
        Ok(s.refuse_if_broken(ran))
    }

    async fn batch(&mut self, script: String) -> wasmtime::Result<Result<(), SqlError>> {
        let Some(s) = self.sql.as_mut() else {
            return Ok(Err(no_session()));
        };
        let statements = super::classify::split(&script);
        for st in &statements {
            if let Err(e) = s.admit(st) {
                return Ok(Err(e));
            }
        }
        let client = s.client.clone();
        let failed = s.failed.clone();
        if !s.tx.transactional() {
            // One statement at a time through the extended protocol (which refuses a piece
            // holding two commands), each followed by the check that no transaction block
            // was left open, stopping at the first failure (e.g. `CREATE INDEX
            // CONCURRENTLY`, which must not run in a transaction block).
            for st in statements {
                let (ran, answer) = s
                    .guarded_pair(async {
                        // Rows are read and dropped one by one (never collected: a script's
                        // results are not the plugin's to see).
                        let run = async {
                            let rows = client
                                .query_typed_raw(st, std::iter::empty::<(&str, Type)>())
                                .await?;
                            futures_util::pin_mut!(rows);
                            while futures_util::StreamExt::next(&mut rows)
                                .await
                                .transpose()?
                                .is_some()
                            {}
                            Ok::<(), tokio_postgres::Error>(())
                        };
                        let (ran, answer) = futures_util::future::join(
                            run,
                            simple_last_value(&client, AUTOCOMMIT_SQL),
                        )
                        .await;
                        Ok((ran.map_err(failed.pg(st, st)), answer))
                    })
                    .await;
                s.judge_after(answer);
                if let Err(e) = s.refuse_if_broken(ran) {
                    return Ok(Err(e));
                }
            }
            return Ok(Ok(()));
        }
        // The step's transaction opens first, in a round trip of its own: if its `BEGIN`
        // fails, the script is never sent.
        if let Err(e) = s.begin_if_pending().await {
            return Ok(Err(e));
        }
        // Inside the step's transaction, as the argument of `wasmig_api.run_script`:
        // PostgreSQL itself refuses transaction control there, so no check is needed.
        let params: [(&(dyn ToSql + Sync), Type); 1] = [(&script, Type::TEXT)];
        Ok(s.guarded(async {
            client
                .query_typed(crate::control::RUN_SCRIPT_SQL, &params)
                .await
                .map(drop)
                .map_err(failed.pg(crate::control::RUN_SCRIPT_SQL, &script))
        })
        .await)
    }
}

impl SqlSession {
    /// [`Self::guarded`] for a statement and its pipelined check: a timeout or a failed
    /// prepare fails both.
    async fn guarded_pair<T>(
        &self,
        fut: impl Future<Output = Result<(Result<T, SqlError>, CheckAnswer), SqlError>>,
    ) -> (Result<T, SqlError>, Option<CheckAnswer>) {
        match self.guarded(fut).await {
            Ok((ran, answer)) => (ran, Some(answer)),
            Err(e) => (Err(e), None),
        }
    }

    /// Judges the check's answer, if the statement got as far as being sent.
    fn judge_after(&mut self, answer: Option<CheckAnswer>) {
        if let Some(answer) = answer {
            self.tx.judge(
                answer
                    .as_ref()
                    .map(Option::as_deref)
                    .map_err(|e| e.sqlstate.as_deref()),
            );
        }
    }

    /// A statement that ended or opened a transaction fails, even if it succeeded.
    fn refuse_if_broken<T>(&self, ran: Result<T, SqlError>) -> Result<T, SqlError> {
        match (self.tx.refusal(), ran) {
            (Some(why), _) if self.tx.lost() => Err(host_error(why.to_owned())),
            (_, ran) => ran,
        }
    }
}

/// What the check after a statement answered (its last value, as text).
type CheckAnswer = Result<Option<String>, SqlError>;

/// Sends `sql` as one simple query and returns the first column of its last row.
async fn simple_last_value(client: &Client, sql: &str) -> CheckAnswer {
    let messages = client.simple_query(sql).await.map_err(pg_err)?;
    Ok(last_value(&messages))
}

fn last_value(messages: &[tokio_postgres::SimpleQueryMessage]) -> Option<String> {
    messages.iter().rev().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
        _ => None,
    })
}

fn pg_err(e: tokio_postgres::Error) -> SqlError {
    PgError::from(e).into()
}
