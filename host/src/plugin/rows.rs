//! What crosses the `sql` boundary as values: parameters sent in PostgreSQL's text format,
//! result cells decoded into WIT values, and the row and byte bounds of a query's result as
//! the host holds it.

use std::error::Error as StdError;

use bytes::BytesMut;
use futures_util::StreamExt;
use tokio_postgres::Client;
use tokio_postgres::types::{Format, IsNull, Kind as PgKind, ToSql, Type, to_sql_checked};

use super::bindings::wasmig::plugin0_1_0::types::{Column, Rows, SqlError, Value};
use super::sql::host_error;
use crate::db::value::{
    RawCell, date_to_text, numeric_to_text, time_to_text, timestamp_to_text, uuid_to_text,
};

/// A parameter sent in PostgreSQL's text format, so the server parses it with the target
/// column's own input function (works for every type: ints, numeric, uuid, json, enums...).
#[derive(Debug)]
pub(super) struct TextParam<'a>(pub(super) &'a Value);

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

fn decode(ty: &Type, raw: Option<&[u8]>, column: &str) -> Result<Value, SqlError> {
    let Some(b) = raw else {
        return Ok(Value::Null);
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
    Ok(v)
}

/// What the host keeps per cell besides its text or bytes: the value's own size. A NULL or
/// a number costs this much too, so a wide result of NULLs is counted for what it takes.
const CELL_OVERHEAD: usize = std::mem::size_of::<Value>();
/// What the host keeps per row besides its cells.
const ROW_OVERHEAD: usize = std::mem::size_of::<Vec<Value>>();

/// The bytes the host holds for a decoded cell: its value plus the text or bytes it owns
/// (a 10-byte numeric on the wire can decode to 131,071 characters).
fn held_bytes(v: &Value) -> usize {
    CELL_OVERHEAD
        + match v {
            Value::Text(s)
            | Value::Numeric(s)
            | Value::Uuid(s)
            | Value::Json(s)
            | Value::Timestamp(s) => s.len(),
            Value::Bytes(b) => b.len(),
            Value::Null | Value::Boolean(_) | Value::Int64(_) | Value::Float64(_) => 0,
        }
}

/// Runs a prepared query, streaming rows and stopping as soon as a row or byte limit is
/// passed, so a huge result is never buffered whole in the host. Bytes are what the host
/// holds once cells are decoded (see [`held_bytes`]), checked after every cell.
pub(super) async fn run_query(
    client: &Client,
    stmt: &tokio_postgres::Statement,
    params: &[TextParam<'_>],
    max_rows: usize,
    max_bytes: usize,
    pg_err: impl Fn(tokio_postgres::Error) -> SqlError,
) -> Result<Rows, SqlError> {
    let columns: Vec<Column> = stmt
        .columns()
        .iter()
        .map(|c| Column {
            name: c.name().to_owned(),
            type_name: c.type_().name().to_owned(),
        })
        .collect();
    let too_big = || {
        host_error(format!(
            "query result is larger than {max_bytes} bytes once decoded, the limit per query (max_result_bytes)"
        ))
    };
    let mut bytes = columns
        .iter()
        .map(|c| c.name.len() + c.type_name.len())
        .sum::<usize>();
    if bytes > max_bytes {
        return Err(too_big());
    }
    let refs = params.iter().map(|p| p as &dyn ToSql);
    let stream = client.query_raw(stmt, refs).await.map_err(&pg_err)?;
    let mut stream = std::pin::pin!(stream);
    let mut out = Vec::new();
    while let Some(row) = stream.next().await {
        let row = row.map_err(&pg_err)?;
        if out.len() == max_rows {
            return Err(host_error(format!(
                "query returned more than {max_rows} rows, the limit per query (max_result_rows)"
            )));
        }
        bytes += ROW_OVERHEAD;
        let mut values = Vec::with_capacity(columns.len());
        for (i, c) in stmt.columns().iter().enumerate() {
            let raw: RawCell<'_> = row.try_get(i).map_err(&pg_err)?;
            // Refused before decoding copies it (the row itself is already in memory: a single
            // value is bounded only by PostgreSQL's 1 GB per field).
            if bytes + raw.0.map_or(0, <[u8]>::len) > max_bytes {
                return Err(too_big());
            }
            let v = decode(c.type_(), raw.0, c.name())?;
            bytes += held_bytes(&v);
            if bytes > max_bytes {
                return Err(too_big());
            }
            values.push(v);
        }
        out.push(values);
    }
    Ok(Rows { columns, rows: out })
}
