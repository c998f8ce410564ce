//! The `sql` capability: what a plugin's `execute`, `query` and `batch` calls do. Statements
//! run on the schema role's own connection (the server enforces what it may touch); the
//! host adds only what the server cannot: no transaction control inside a step, and bounds
//! on statements, rows and bytes.

use std::error::Error as StdError;
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;
use futures_util::StreamExt;
use tokio_postgres::types::{Format, IsNull, Kind as PgKind, ToSql, Type, to_sql_checked};
use tokio_postgres::{Client, NoTls};

use super::StepCtx;
use super::bindings::wasmig::plugin::sql::Host;
use super::bindings::wasmig::plugin::types::{Column, Rows, SqlError, Value};
use crate::db::PgError;
use crate::db::quote::{dollar_quote, first_keyword, is_transaction_control, split_statements};
use crate::db::value::{
    RawCell, date_to_text, numeric_to_text, time_to_text, timestamp_to_text, uuid_to_text,
};

/// A plugin's SQL session for one step.
pub struct SqlSession {
    client: Arc<Client>,
    transactional: bool,
    statements: u32,
    max_statements: u32,
    max_rows: usize,
    max_bytes: usize,
    deadline: Instant,
    timeout_secs: f64,
    begin_pending: bool,
    /// Set when the query that opened the step's transaction failed: the transaction may not
    /// be open (a cancel at the step deadline can land on its `BEGIN`), so every later call
    /// is refused rather than run outside it.
    broken: Option<String>,
}

impl SqlSession {
    /// A session on `client`; `transactional` says whether the host opened a transaction.
    /// Every call must finish by the step's deadline (`limits.step_timeout` from now).
    pub fn new(client: Arc<Client>, transactional: bool, limits: &super::Limits) -> Self {
        SqlSession {
            client,
            transactional,
            statements: 0,
            max_statements: limits.max_statements,
            max_rows: limits.max_result_rows,
            max_bytes: limits.max_result_bytes,
            deadline: Instant::now() + limits.step_timeout,
            timeout_secs: limits.step_timeout.as_secs_f64(),
            begin_pending: transactional,
            broken: None,
        }
    }

    /// Whether the step's transaction has not been opened yet (the plugin sent no SQL);
    /// the host then opens it together with the ledger record.
    pub fn begin_pending(&self) -> bool {
        self.begin_pending
    }

    /// Why the step's later statements were refused, if they were: the step has failed even
    /// if the plugin swallowed that error (its transaction may never have opened).
    pub fn broken(&self) -> Option<&str> {
        self.broken.as_deref()
    }

    /// Opens the step's transaction before the first extended-protocol statement.
    async fn begin_if_pending(&mut self) -> Result<(), SqlError> {
        if self.begin_pending {
            self.begin_pending = false;
            let client = self.client.clone();
            let opened = self
                .guarded(async { client.batch_execute("BEGIN").await.map_err(pg_err) })
                .await;
            self.note_opening(&opened);
            opened?;
        }
        Ok(())
    }

    /// Remembers that the query opening the step's transaction failed.
    fn note_opening<T>(&mut self, opened: &Result<T, SqlError>) {
        if let Err(e) = opened {
            self.broken = Some(format!(
                "an earlier statement of this step failed ({}), so the step's transaction may not be open; return the error",
                e.message
            ));
        }
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
        if let Some(why) = &self.broken {
            return Err(host_error(why.clone()));
        }
        self.statements += 1;
        if self.statements > self.max_statements {
            return Err(host_error(format!(
                "the step sent more than {} statements, the limit per step (max_statements)",
                self.max_statements
            )));
        }
        if is_transaction_control(statement) {
            return Err(host_error(format!(
                "`{}` is not allowed in a step: wasmig runs every step in its own transaction and records it in the same one",
                first_keyword(statement)
            )));
        }
        Ok(())
    }
}

fn host_error(message: String) -> SqlError {
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

/// A parameter sent in PostgreSQL's text format, so the server parses it with the target
/// column's own input function (works for every type: ints, numeric, uuid, json, enums...).
#[derive(Debug)]
struct TextParam<'a>(&'a Value);

impl ToSql for TextParam<'_> {
    fn to_sql(
        &self,
        _ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn StdError + Sync + Send>> {
        let text: std::borrow::Cow<'_, str> = match self.0 {
            Value::Null => return Ok(IsNull::Yes),
            Value::Boolean(b) => (if *b { "t" } else { "f" }).into(),
            Value::Int64(i) => i.to_string().into(),
            Value::Float64(f) if f.is_nan() => "NaN".into(),
            Value::Float64(f) if f.is_infinite() => {
                (if *f > 0.0 { "Infinity" } else { "-Infinity" }).into()
            }
            Value::Float64(f) => format!("{f:?}").into(),
            Value::Bytes(b) => {
                let mut s = String::with_capacity(2 + b.len() * 2);
                s.push_str("\\x");
                for byte in b {
                    s.push_str(&format!("{byte:02x}"));
                }
                s.into()
            }
            Value::Text(s)
            | Value::Numeric(s)
            | Value::Uuid(s)
            | Value::Json(s)
            | Value::Timestamp(s) => s.as_str().into(),
        };
        out.extend_from_slice(text.as_bytes());
        Ok(IsNull::No)
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    fn encode_format(&self, _ty: &Type) -> Format {
        Format::Text
    }

    to_sql_checked!();
}

fn decode(ty: &Type, raw: Option<&[u8]>, column: &str) -> Result<(Value, usize), SqlError> {
    let Some(b) = raw else {
        return Ok((Value::Null, 0));
    };
    let bad = || {
        host_error(format!(
            "column `{column}`: malformed `{}` value from the server",
            ty.name()
        ))
    };
    let utf8 = |b: &[u8]| String::from_utf8(b.to_vec()).map_err(|_| bad());
    let int = |b: &[u8]| -> Option<i64> {
        Some(match b.len() {
            2 => i64::from(i16::from_be_bytes(b.try_into().ok()?)),
            4 => i64::from(i32::from_be_bytes(b.try_into().ok()?)),
            8 => i64::from_be_bytes(b.try_into().ok()?),
            _ => return None,
        })
    };
    let v = match *ty {
        Type::BOOL => Value::Boolean(b.first() == Some(&1)),
        Type::INT2 | Type::INT4 | Type::INT8 => Value::Int64(int(b).ok_or_else(bad)?),
        Type::OID => Value::Int64(i64::from(u32::from_be_bytes(
            b.try_into().map_err(|_| bad())?,
        ))),
        Type::FLOAT4 => Value::Float64(f64::from(f32::from_be_bytes(
            b.try_into().map_err(|_| bad())?,
        ))),
        Type::FLOAT8 => Value::Float64(f64::from_be_bytes(b.try_into().map_err(|_| bad())?)),
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN | Type::CHAR => {
            Value::Text(utf8(b)?)
        }
        Type::BYTEA => Value::Bytes(b.to_vec()),
        Type::NUMERIC => Value::Numeric(numeric_to_text(b).ok_or_else(bad)?),
        Type::UUID => Value::Uuid(uuid_to_text(b).ok_or_else(bad)?),
        Type::JSON => Value::Json(utf8(b)?),
        Type::JSONB => Value::Json(utf8(b.get(1..).ok_or_else(bad)?)?),
        Type::TIMESTAMP => Value::Timestamp(timestamp_to_text(b, false).ok_or_else(bad)?),
        Type::TIMESTAMPTZ => Value::Timestamp(timestamp_to_text(b, true).ok_or_else(bad)?),
        Type::DATE => Value::Timestamp(date_to_text(b).ok_or_else(bad)?),
        Type::TIME => Value::Timestamp(time_to_text(b).ok_or_else(bad)?),
        _ if matches!(ty.kind(), PgKind::Enum(_)) => Value::Text(utf8(b)?),
        _ => {
            return Err(host_error(format!(
                "column `{column}` has type `{}`, which wasmig does not return yet; cast it in the query (e.g. `{column}::text`)",
                ty.name()
            )));
        }
    };
    Ok((v, b.len()))
}

impl Host for StepCtx {
    async fn execute(
        &mut self,
        statement: String,
        params: Vec<Value>,
    ) -> wasmtime::Result<Result<u64, SqlError>> {
        let Some(s) = self.sql.as_mut() else {
            return Ok(Err(no_session()));
        };
        if let Err(e) = s.admit(&statement) {
            return Ok(Err(e));
        }
        if let Err(e) = s.begin_if_pending().await {
            return Ok(Err(e));
        }
        let ps: Vec<TextParam<'_>> = params.iter().map(TextParam).collect();
        let refs: Vec<&(dyn ToSql + Sync)> = ps.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
        let client = s.client.clone();
        Ok(s.guarded(async {
            client
                .execute(statement.as_str(), &refs)
                .await
                .map_err(pg_err)
        })
        .await)
    }

    async fn query(
        &mut self,
        statement: String,
        params: Vec<Value>,
    ) -> wasmtime::Result<Result<Rows, SqlError>> {
        let Some(s) = self.sql.as_mut() else {
            return Ok(Err(no_session()));
        };
        if let Err(e) = s.admit(&statement) {
            return Ok(Err(e));
        }
        if let Err(e) = s.begin_if_pending().await {
            return Ok(Err(e));
        }
        let ps: Vec<TextParam<'_>> = params.iter().map(TextParam).collect();
        let (max_rows, max_bytes) = (s.max_rows, s.max_bytes);
        let client = s.client.clone();
        Ok(
            s.guarded(run_query(&client, &statement, &ps, max_rows, max_bytes))
                .await,
        )
    }

    async fn batch(&mut self, script: String) -> wasmtime::Result<Result<(), SqlError>> {
        let Some(s) = self.sql.as_mut() else {
            return Ok(Err(no_session()));
        };
        let statements = split_statements(&script);
        for st in &statements {
            if let Err(e) = s.admit(st) {
                return Ok(Err(e));
            }
        }
        let client = s.client.clone();
        let begin = s.transactional && std::mem::take(&mut s.begin_pending);
        let transactional = s.transactional;
        let ran = s
            .guarded(run_script(
                &client,
                &script,
                &statements,
                begin,
                transactional,
            ))
            .await;
        if begin {
            s.note_opening(&ran);
        }
        Ok(ran)
    }
}

/// Sends a script. Inside the step's transaction it goes whole, as the argument of
/// `wasmig_api.run_script` (PL/pgSQL `EXECUTE`, with the role's own rights): one statement,
/// in the same query as the step's `BEGIN` (dollar-quoted with a tag the script does not
/// hold) or, later in the step, as a bound parameter. PostgreSQL refuses any transaction
/// control inside it, so a statement boundary the host's splitter misread (quoting rules can
/// change with `standard_conforming_strings`) cannot smuggle a `COMMIT` through. Outside a
/// transaction the statements run one by one through the extended protocol (which refuses a
/// piece holding more than one command), stopping at the first failure (e.g. `CREATE INDEX
/// CONCURRENTLY`, which must not run in a transaction block).
async fn run_script(
    client: &Client,
    script: &str,
    statements: &[&str],
    begin: bool,
    transactional: bool,
) -> Result<(), SqlError> {
    if !transactional {
        for st in statements {
            client.query_typed(st, &[]).await.map_err(pg_err)?;
        }
        return Ok(());
    }
    if begin {
        // One simple query, so that if `BEGIN` fails (a cancel can land on it) the server
        // skips the script rather than running it outside the step's transaction.
        let quoted = dollar_quote(script).ok_or_else(|| {
            host_error("the script contains a NUL byte, which PostgreSQL cannot take".into())
        })?;
        client
            .batch_execute(&format!(
                "BEGIN; SELECT wasmig_api.run_script({quoted}::pg_catalog.text)"
            ))
            .await
            .map_err(pg_err)?;
    } else {
        let params: [(&(dyn ToSql + Sync), Type); 1] = [(&script, Type::TEXT)];
        client
            .query_typed(crate::control::RUN_SCRIPT_SQL, &params)
            .await
            .map_err(pg_err)?;
    }
    Ok(())
}

fn pg_err(e: tokio_postgres::Error) -> SqlError {
    PgError::from(e).into()
}

/// Prepares and runs a query, streaming rows and stopping as soon as a row or byte limit is
/// passed, so a huge result is never buffered whole in the host.
async fn run_query(
    client: &Client,
    statement: &str,
    params: &[TextParam<'_>],
    max_rows: usize,
    max_bytes: usize,
) -> Result<Rows, SqlError> {
    let stmt = client.prepare(statement).await.map_err(pg_err)?;
    let columns: Vec<Column> = stmt
        .columns()
        .iter()
        .map(|c| Column {
            name: c.name().to_owned(),
            type_name: c.type_().name().to_owned(),
        })
        .collect();
    let refs = params.iter().map(|p| p as &dyn ToSql);
    let stream = client.query_raw(&stmt, refs).await.map_err(pg_err)?;
    let mut stream = std::pin::pin!(stream);
    let mut bytes = 0usize;
    let mut out = Vec::new();
    while let Some(row) = stream.next().await {
        let row = row.map_err(pg_err)?;
        if out.len() == max_rows {
            return Err(host_error(format!(
                "query returned more than {max_rows} rows, the limit per query (max_result_rows)"
            )));
        }
        let mut values = Vec::with_capacity(columns.len());
        for (i, c) in stmt.columns().iter().enumerate() {
            let raw: RawCell<'_> = row.try_get(i).map_err(pg_err)?;
            let (v, n) = decode(c.type_(), raw.0, c.name())?;
            bytes += n;
            values.push(v);
        }
        if bytes > max_bytes {
            return Err(host_error(format!(
                "query result is larger than {max_bytes} bytes, the limit per query (max_result_bytes)"
            )));
        }
        out.push(values);
    }
    Ok(Rows { columns, rows: out })
}
