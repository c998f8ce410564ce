//! The SQL capability as plain Rust: [`Db`], [`Value`], [`Rows`]/[`Row`] and [`Error`].
//!
//! Everything here wraps the WIT `sql` interface; plugin authors never see WIT types.

use std::fmt;

use crate::bindings::wasmig::plugin0_1_0::{sql, types};

/// A SQL value: a parameter sent to, or a cell read from, PostgreSQL.
///
/// `Numeric`, `Uuid`, `Json` and `Timestamp` carry PostgreSQL's text form.
#[derive(Debug, Clone, PartialEq)]
///
/// ```
/// use wasmig_sdk::{FromValue, Value};
/// assert_eq!(i64::from_value(&Value::Int(7)), Ok(7));
/// ```
pub enum Value {
    /// SQL `NULL`.
    Null,
    /// `boolean`.
    Bool(bool),
    /// Any integer type.
    Int(i64),
    /// `real` / `double precision`.
    Float(f64),
    /// Text types (and, as parameters, anything PostgreSQL can parse from text).
    Text(String),
    /// `bytea`.
    Bytes(Vec<u8>),
    /// `numeric`, as text.
    Numeric(String),
    /// `uuid`, as text.
    Uuid(String),
    /// `json`/`jsonb`, as text.
    Json(String),
    /// Date/time types, as ISO 8601 text.
    Timestamp(String),
}

impl From<types::Value> for Value {
    fn from(v: types::Value) -> Self {
        match v {
            types::Value::Null => Value::Null,
            types::Value::Boolean(b) => Value::Bool(b),
            types::Value::Int64(i) => Value::Int(i),
            types::Value::Float64(f) => Value::Float(f),
            types::Value::Text(s) => Value::Text(s),
            types::Value::Bytes(b) => Value::Bytes(b),
            types::Value::Numeric(s) => Value::Numeric(s),
            types::Value::Uuid(s) => Value::Uuid(s),
            types::Value::Json(s) => Value::Json(s),
            types::Value::Timestamp(s) => Value::Timestamp(s),
        }
    }
}

impl From<Value> for types::Value {
    fn from(v: Value) -> Self {
        match v {
            Value::Null => types::Value::Null,
            Value::Bool(b) => types::Value::Boolean(b),
            Value::Int(i) => types::Value::Int64(i),
            Value::Float(f) => types::Value::Float64(f),
            Value::Text(s) => types::Value::Text(s),
            Value::Bytes(b) => types::Value::Bytes(b),
            Value::Numeric(s) => types::Value::Numeric(s),
            Value::Uuid(s) => types::Value::Uuid(s),
            Value::Json(s) => types::Value::Json(s),
            Value::Timestamp(s) => types::Value::Timestamp(s),
        }
    }
}

/// Converts a Rust value into a SQL parameter.
///
/// ```
/// use wasmig_sdk::{ToValue, Value};
/// assert_eq!(42_i64.to_value(), Value::Int(42));
/// assert_eq!(None::<i64>.to_value(), Value::Null);
/// ```
pub trait ToValue {
    /// The SQL value to bind.
    fn to_value(&self) -> Value;
}

impl ToValue for Value {
    fn to_value(&self) -> Value {
        self.clone()
    }
}
impl ToValue for bool {
    fn to_value(&self) -> Value {
        Value::Bool(*self)
    }
}
impl ToValue for str {
    fn to_value(&self) -> Value {
        Value::Text(self.to_owned())
    }
}
impl ToValue for String {
    fn to_value(&self) -> Value {
        Value::Text(self.clone())
    }
}
impl ToValue for f64 {
    fn to_value(&self) -> Value {
        Value::Float(*self)
    }
}
impl ToValue for [u8] {
    fn to_value(&self) -> Value {
        Value::Bytes(self.to_vec())
    }
}
impl ToValue for Vec<u8> {
    fn to_value(&self) -> Value {
        Value::Bytes(self.clone())
    }
}
macro_rules! int_to_value {
    ($($t:ty),*) => {$(
        impl ToValue for $t {
            fn to_value(&self) -> Value {
                Value::Int(i64::from(*self))
            }
        }
    )*};
}
int_to_value!(i8, i16, i32, i64, u8, u16, u32);
impl<T: ToValue + ?Sized> ToValue for &T {
    fn to_value(&self) -> Value {
        (**self).to_value()
    }
}
impl<T: ToValue> ToValue for Option<T> {
    fn to_value(&self) -> Value {
        match self {
            Some(v) => v.to_value(),
            None => Value::Null,
        }
    }
}

/// Reads a Rust value out of a SQL cell.
///
/// ```
/// use wasmig_sdk::{FromValue, Value};
/// assert_eq!(Option::<String>::from_value(&Value::Null), Ok(None));
/// ```
pub trait FromValue: Sized {
    /// Converts the cell, or says why it cannot.
    fn from_value(v: &Value) -> Result<Self, String>;
}

impl FromValue for Value {
    fn from_value(v: &Value) -> Result<Self, String> {
        Ok(v.clone())
    }
}
impl FromValue for i64 {
    fn from_value(v: &Value) -> Result<Self, String> {
        match v {
            Value::Int(i) => Ok(*i),
            other => Err(format!("expected an integer, found {other:?}")),
        }
    }
}
impl FromValue for i32 {
    fn from_value(v: &Value) -> Result<Self, String> {
        let i = i64::from_value(v)?;
        i32::try_from(i).map_err(|_| format!("{i} does not fit in i32"))
    }
}
impl FromValue for bool {
    fn from_value(v: &Value) -> Result<Self, String> {
        match v {
            Value::Bool(b) => Ok(*b),
            other => Err(format!("expected a boolean, found {other:?}")),
        }
    }
}
impl FromValue for f64 {
    fn from_value(v: &Value) -> Result<Self, String> {
        match v {
            Value::Float(f) => Ok(*f),
            Value::Int(i) => Ok(*i as f64),
            other => Err(format!("expected a float, found {other:?}")),
        }
    }
}
impl FromValue for String {
    fn from_value(v: &Value) -> Result<Self, String> {
        match v {
            Value::Text(s)
            | Value::Numeric(s)
            | Value::Uuid(s)
            | Value::Json(s)
            | Value::Timestamp(s) => Ok(s.clone()),
            other => Err(format!("expected text, found {other:?}")),
        }
    }
}
impl FromValue for Vec<u8> {
    fn from_value(v: &Value) -> Result<Self, String> {
        match v {
            Value::Bytes(b) => Ok(b.clone()),
            other => Err(format!("expected bytes, found {other:?}")),
        }
    }
}
impl<T: FromValue> FromValue for Option<T> {
    fn from_value(v: &Value) -> Result<Self, String> {
        match v {
            Value::Null => Ok(None),
            other => T::from_value(other).map(Some),
        }
    }
}

/// An error from a step: a PostgreSQL error (with SQLSTATE) or a message of the plugin's own.
#[derive(Debug, Clone, PartialEq)]
///
/// ```
/// use wasmig_sdk::Error;
/// let e = Error::msg("no such unit");
/// assert_eq!(e.sqlstate(), None);
/// ```
pub enum Error {
    /// The server (or the host) refused a statement.
    Sql {
        /// Five-character SQLSTATE code, when PostgreSQL reported one.
        sqlstate: Option<String>,
        /// Primary message.
        message: String,
        /// Optional detail.
        detail: Option<String>,
        /// Optional hint.
        hint: Option<String>,
    },
    /// Any other failure, described by the plugin.
    Message(String),
}

impl Error {
    /// An error with a message of the plugin's own.
    ///
    /// ```
    /// let e = wasmig_sdk::Error::msg("the price list is empty");
    /// assert_eq!(e.to_string(), "the price list is empty");
    /// ```
    pub fn msg(message: impl Into<String>) -> Self {
        Error::Message(message.into())
    }

    /// The SQLSTATE, when this is a PostgreSQL error.
    ///
    /// ```no_run
    /// # fn step(db: &wasmig_sdk::Db) -> Result<(), wasmig_sdk::Error> {
    /// match db.execute("INSERT INTO unit (code) VALUES ('kg')", &[]) {
    ///     Err(e) if e.sqlstate() == Some("23505") => {} // already there
    ///     other => { other?; }
    /// }
    /// # Ok(()) }
    /// ```
    pub fn sqlstate(&self) -> Option<&str> {
        match self {
            Error::Sql { sqlstate, .. } => sqlstate.as_deref(),
            Error::Message(_) => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Sql {
                sqlstate, message, ..
            } => match sqlstate {
                Some(code) => write!(f, "{message} (SQLSTATE {code})"),
                None => f.write_str(message),
            },
            Error::Message(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for Error {}

impl From<types::SqlError> for Error {
    fn from(e: types::SqlError) -> Self {
        Error::Sql {
            sqlstate: e.sqlstate,
            message: e.message,
            detail: e.detail,
            hint: e.hint,
        }
    }
}

/// The result of [`Db::query`]: column names and rows.
#[derive(Debug, Clone, PartialEq)]
///
/// ```no_run
/// # fn step(db: &wasmig_sdk::Db) -> Result<(), wasmig_sdk::Error> {
/// let rows = db.query("SELECT code FROM unit", &[])?;
/// wasmig_sdk::info(&format!("{} units, columns {:?}", rows.len(), rows.columns()));
/// # Ok(()) }
/// ```
pub struct Rows {
    columns: Vec<String>,
    type_names: Vec<String>,
    rows: Vec<Vec<Value>>,
}

impl Rows {
    /// Column names in order.
    pub fn columns(&self) -> &[String] {
        &self.columns
    }
    /// PostgreSQL type names of the columns, in order.
    pub fn type_names(&self) -> &[String] {
        &self.type_names
    }
    /// Number of rows.
    pub fn len(&self) -> usize {
        self.rows.len()
    }
    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
    /// The rows, each readable by column name.
    pub fn iter(&self) -> impl Iterator<Item = Row<'_>> {
        self.rows.iter().map(|values| Row {
            columns: &self.columns,
            values,
        })
    }
    /// The first row, if any.
    pub fn first(&self) -> Option<Row<'_>> {
        self.iter().next()
    }
}

/// One row of [`Rows`].
#[derive(Debug, Clone, Copy)]
///
/// ```no_run
/// # fn step(db: &wasmig_sdk::Db) -> Result<(), wasmig_sdk::Error> {
/// if let Some(row) = db.query("SELECT code, name FROM unit LIMIT 1", &[])?.first() {
///     let name: Option<String> = row.get("name")?;
/// }
/// # Ok(()) }
/// ```
pub struct Row<'a> {
    columns: &'a [String],
    values: &'a [Value],
}

impl Row<'_> {
    /// Reads column `name` as `T`.
    pub fn get<T: FromValue>(&self, name: &str) -> Result<T, Error> {
        let idx = self.columns.iter().position(|c| c == name).ok_or_else(|| {
            Error::msg(format!(
                "no column `{name}` in the result (columns: {})",
                self.columns.join(", ")
            ))
        })?;
        T::from_value(&self.values[idx])
            .map_err(|why| Error::msg(format!("column `{name}`: {why}")))
    }
    /// The raw values in column order.
    pub fn values(&self) -> &[Value] {
        self.values
    }
}

/// The SQL capability: statements run in the plugin's own schema, on a connection whose
/// role can touch nothing else.
#[derive(Debug, Clone, Copy, Default)]
///
/// ```no_run
/// use wasmig_sdk::{Db, Error};
/// fn backfill(db: &Db) -> Result<(), Error> {
///     db.execute("UPDATE item SET sku = upper(sku) WHERE sku <> upper(sku)", &[])?;
///     Ok(())
/// }
/// ```
pub struct Db {
    _private: (),
}

impl Db {
    pub(crate) fn new() -> Self {
        Db { _private: () }
    }

    /// Runs one statement with parameters `$1`, `$2`, ...; returns the number of rows affected.
    ///
    /// ```no_run
    /// # fn step(db: &wasmig_sdk::Db) -> Result<(), wasmig_sdk::Error> {
    /// let n = db.execute("UPDATE item SET name = $1 WHERE id = $2", &[&"Bolt", &7_i64])?;
    /// assert!(n <= 1);
    /// # Ok(()) }
    /// ```
    pub fn execute(&self, statement: &str, params: &[&dyn ToValue]) -> Result<u64, Error> {
        Ok(sql::execute(statement, &to_wit(params))?)
    }

    /// Runs one query that must return exactly one row.
    ///
    /// ```no_run
    /// # fn step(db: &wasmig_sdk::Db) -> Result<(), wasmig_sdk::Error> {
    /// let item = db.query_one("SELECT id, name FROM item WHERE code = $1", &[&"b7"])?;
    /// let name: String = item.get("name")?;
    /// # Ok(()) }
    /// ```
    pub fn query_one(&self, statement: &str, params: &[&dyn ToValue]) -> Result<Record, Error> {
        match self.query_opt(statement, params)? {
            Some(r) => Ok(r),
            None => Err(Error::msg(format!(
                "expected one row, got none: {}",
                short(statement)
            ))),
        }
    }

    /// Runs one query that returns at most one row.
    ///
    /// ```no_run
    /// # fn step(db: &wasmig_sdk::Db) -> Result<(), wasmig_sdk::Error> {
    /// if db.query_opt("SELECT 1 AS x FROM item WHERE code = $1", &[&"b7"])?.is_none() {
    ///     db.execute("INSERT INTO item (code, name) VALUES ($1, $2)", &[&"b7", &"Bolt"])?;
    /// }
    /// # Ok(()) }
    /// ```
    pub fn query_opt(
        &self,
        statement: &str,
        params: &[&dyn ToValue],
    ) -> Result<Option<Record>, Error> {
        let mut rows = self.query(statement, params)?;
        match rows.rows.len() {
            0 => Ok(None),
            1 => Ok(Some(Record {
                columns: std::mem::take(&mut rows.columns),
                values: rows.rows.pop().unwrap_or_default(),
            })),
            n => Err(Error::msg(format!(
                "expected at most one row, got {n}: {}",
                short(statement)
            ))),
        }
    }

    /// Runs one query that returns exactly one row of one column, read as `T`.
    ///
    /// ```no_run
    /// # fn step(db: &wasmig_sdk::Db) -> Result<(), wasmig_sdk::Error> {
    /// let count: i64 = db.query_scalar("SELECT count(*) FROM item", &[])?;
    /// wasmig_sdk::info(&format!("{count} items"));
    /// # Ok(()) }
    /// ```
    pub fn query_scalar<T: FromValue>(
        &self,
        statement: &str,
        params: &[&dyn ToValue],
    ) -> Result<T, Error> {
        let row = self.query_one(statement, params)?;
        match &row.values[..] {
            [v] => T::from_value(v).map_err(|why| Error::msg(format!("the value: {why}"))),
            cells => Err(Error::msg(format!(
                "expected one column, got {}: {}",
                cells.len(),
                short(statement)
            ))),
        }
    }

    /// Runs one query with parameters; returns its rows.
    ///
    /// ```no_run
    /// # fn step(db: &wasmig_sdk::Db) -> Result<(), wasmig_sdk::Error> {
    /// for row in db.query("SELECT code, name FROM item ORDER BY code", &[])?.iter() {
    ///     let code: String = row.get("code")?;
    ///     wasmig_sdk::debug(&code);
    /// }
    /// # Ok(()) }
    /// ```
    pub fn query(&self, statement: &str, params: &[&dyn ToValue]) -> Result<Rows, Error> {
        let r = sql::query(statement, &to_wit(params))?;
        let (columns, type_names) = r.columns.into_iter().map(|c| (c.name, c.type_name)).unzip();
        Ok(Rows {
            columns,
            type_names,
            rows: r
                .rows
                .into_iter()
                .map(|row| row.into_iter().map(Value::from).collect())
                .collect(),
        })
    }

    /// Runs a script of several statements (no parameters).
    ///
    /// ```no_run
    /// # fn step(db: &wasmig_sdk::Db) -> Result<(), wasmig_sdk::Error> {
    /// db.batch("CREATE TABLE tag (id bigint PRIMARY KEY); CREATE INDEX ON tag (id);")?;
    /// # Ok(()) }
    /// ```
    pub fn batch(&self, script: &str) -> Result<(), Error> {
        Ok(sql::batch(script)?)
    }
}

/// The start of a statement, for an error message.
fn short(statement: &str) -> String {
    let one_line: String = statement.split_whitespace().collect::<Vec<_>>().join(" ");
    match one_line.char_indices().nth(80) {
        Some((i, _)) => format!("{}...", &one_line[..i]),
        None => one_line,
    }
}

/// One row a query returned, owned ([`Db::query_one`], [`Db::query_opt`]).
///
/// ```no_run
/// # fn step(db: &wasmig_sdk::Db) -> Result<(), wasmig_sdk::Error> {
/// let unit: wasmig_sdk::Record = db.query_one("SELECT code, name FROM unit LIMIT 1", &[])?;
/// let code: String = unit.get("code")?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    columns: Vec<String>,
    values: Vec<Value>,
}

impl Record {
    /// Reads column `name` as `T`.
    ///
    /// ```no_run
    /// # fn step(db: &wasmig_sdk::Db) -> Result<(), wasmig_sdk::Error> {
    /// let r = db.query_one("SELECT 42 AS answer", &[])?;
    /// assert_eq!(r.get::<i64>("answer")?, 42);
    /// # Ok(()) }
    /// ```
    pub fn get<T: FromValue>(&self, name: &str) -> Result<T, Error> {
        Row {
            columns: &self.columns,
            values: &self.values,
        }
        .get(name)
    }

    /// The raw values in column order.
    ///
    /// ```no_run
    /// # fn step(db: &wasmig_sdk::Db) -> Result<(), wasmig_sdk::Error> {
    /// let r = db.query_one("SELECT 1 AS a, NULL AS b", &[])?;
    /// assert_eq!(r.values().len(), 2);
    /// # Ok(()) }
    /// ```
    pub fn values(&self) -> &[Value] {
        &self.values
    }
}

fn to_wit(params: &[&dyn ToValue]) -> Vec<types::Value> {
    params.iter().map(|p| p.to_value().into()).collect()
}
