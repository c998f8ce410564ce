//! Everything that talks to PostgreSQL: connection settings ([`connect`]), plugin sessions'
//! connections with their server messages cut to bounded sizes ([`cut`]), connection-string
//! parameters ([`conninfo`]), password redaction ([`redact`]) and TLS ([`tls`]), identifier and
//! literal quoting plus statement splitting ([`quote`]), value decoding ([`value`]), and the
//! error type for this boundary.

pub mod connect;
pub mod conninfo;
pub mod cut;
pub mod quote;
pub mod redact;
pub mod tls;
pub mod value;

use thiserror::Error;

/// A PostgreSQL error, reduced to what an operator needs (never includes credentials).
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("{message}{}", sqlstate.as_ref().map(|s| format!(" (SQLSTATE {s})")).unwrap_or_default())]
pub struct PgError {
    /// SQLSTATE when the server sent one.
    pub sqlstate: Option<String>,
    /// Primary message.
    pub message: String,
    /// Detail line.
    pub detail: Option<String>,
    /// Hint line.
    pub hint: Option<String>,
}

impl PgError {
    /// An error of the client's own (no SQLSTATE).
    pub fn client(message: String) -> Self {
        PgError {
            sqlstate: None,
            message,
            detail: None,
            hint: None,
        }
    }
}

impl From<tokio_postgres::Error> for PgError {
    fn from(e: tokio_postgres::Error) -> Self {
        match e.as_db_error() {
            Some(db) => PgError {
                sqlstate: Some(db.code().code().to_owned()),
                message: db.message().to_owned(),
                detail: db.detail().map(str::to_owned),
                hint: db.hint().map(str::to_owned),
            },
            None => {
                // Client-side errors (I/O, protocol): tokio-postgres's Display plus its source.
                let mut message = e.to_string();
                if let Some(src) = std::error::Error::source(&e) {
                    let s = src.to_string();
                    if !message.contains(&s) {
                        message = format!("{message}: {s}");
                    }
                }
                PgError {
                    sqlstate: None,
                    message,
                    detail: None,
                    hint: None,
                }
            }
        }
    }
}
