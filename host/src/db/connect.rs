//! Connection settings: `--database-url`, else `DATABASE_URL`, else the libpq `PG*`
//! variables, with TLS as libpq's `sslmode` / `sslrootcert` describe it ([`super::tls`]).
//! Parsed and validated before any I/O; passwords never leave this module in text form
//! except inside the driver's config.

use std::fmt;
use std::time::Duration;

use thiserror::Error;
use tokio_postgres::config::Host;
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::{Client, Config, NoTls, Socket};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::PgError;
use super::tls::{self, TlsParams, TlsSettings};

/// Why connection settings were refused or a connection failed.
#[derive(Debug, Error)]
pub enum ConnectError {
    /// Nothing configured.
    #[error(
        "no database configured: pass --database-url, or set DATABASE_URL, or the libpq variables (PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE)"
    )]
    NotConfigured,
    /// The URL or connection string does not parse.
    #[error("invalid database URL `{url}` (from {source_name}): {reason}")]
    InvalidUrl {
        /// The URL with any password replaced by `***`.
        url: String,
        /// Where it came from.
        source_name: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A `PG*` variable has a bad value.
    #[error("invalid {var}: {reason}")]
    InvalidVar {
        /// Variable name.
        var: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The TLS settings cannot be used (bad root certificate file, `verify-*` without roots).
    #[error("TLS settings: {reason}")]
    Tls {
        /// What is wrong and what to do.
        reason: String,
    },
    /// The server could not be reached or refused the login.
    #[error("cannot connect to {target} as `{user}`: {error}")]
    Connect {
        /// Redacted target description.
        target: String,
        /// The role used.
        user: String,
        /// What the driver or server said.
        error: Box<PgError>,
    },
}

/// Validated connection settings for the operator's (privileged) connection.
#[derive(Clone)]
pub struct DbTarget {
    config: Config,
    described: String,
    tls: TlsSettings,
    /// `None` for `sslmode=disable`.
    connector: Option<MakeRustlsConnect>,
}

impl fmt::Debug for DbTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.described)
    }
}

impl fmt::Display for DbTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.described)
    }
}

/// Replaces the password in a URL or key/value connection string with `***`.
pub fn redact(url: &str) -> String {
    if let Some(scheme_end) = url.find("://") {
        let rest = &url[scheme_end + 3..];
        // The driver takes everything up to the last `@` as user info, so a password may
        // itself contain `/`, `?` or `@`: redact up to the last `@` anywhere.
        if let Some(at) = rest.rfind('@') {
            let userinfo = &rest[..at];
            if let Some(colon) = userinfo.find(':') {
                return format!(
                    "{}{}:***{}",
                    &url[..scheme_end + 3],
                    &userinfo[..colon],
                    &rest[at..]
                );
            }
        }
        // A password can also hide in the query string.
        return redact_kv_pairs(url, '&');
    }
    redact_kv_pairs(url, ' ')
}

fn redact_kv_pairs(s: &str, sep: char) -> String {
    s.split(sep)
        .map(|part| {
            let key = part.split('=').next().unwrap_or("");
            if key.trim_start_matches(['?', '&']).ends_with("password") {
                let prefix_len = part.find('=').map_or(part.len(), |i| i + 1);
                format!("{}***", &part[..prefix_len])
            } else {
                part.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(&sep.to_string())
}

/// `HOME`, where libpq's default client certificate lives.
fn home(env: &dyn Fn(&str) -> Option<String>) -> Option<std::path::PathBuf> {
    env("HOME").filter(|h| !h.is_empty()).map(Into::into)
}

/// Where the settings come from; `env` is injectable for tests.
pub struct Sources<'a> {
    /// `--database-url`.
    pub flag: Option<&'a str>,
    /// Environment lookup.
    pub env: &'a dyn Fn(&str) -> Option<String>,
}

impl DbTarget {
    /// Resolves settings: flag, then `DATABASE_URL`, then `PG*` variables.
    pub fn resolve(src: &Sources<'_>) -> Result<Self, ConnectError> {
        if let Some(url) = src.flag {
            return Self::parse_with_env(url, "--database-url", src.env);
        }
        if let Some(url) = (src.env)("DATABASE_URL").filter(|u| !u.is_empty()) {
            return Self::parse_with_env(&url, "DATABASE_URL", src.env);
        }
        let var = |k: &str| (src.env)(k).filter(|v| !v.is_empty());
        let any = ["PGHOST", "PGPORT", "PGUSER", "PGPASSWORD", "PGDATABASE"]
            .iter()
            .any(|k| var(k).is_some());
        if !any {
            return Err(ConnectError::NotConfigured);
        }
        let mut config = Config::new();
        config.host(var("PGHOST").as_deref().unwrap_or("localhost"));
        if let Some(port) = var("PGPORT") {
            let port: u16 = port.parse().map_err(|_| ConnectError::InvalidVar {
                var: "PGPORT",
                reason: format!("`{port}` is not a port number"),
            })?;
            config.port(port);
        }
        let user = var("PGUSER")
            .or_else(|| std::env::var("USER").ok())
            .unwrap_or_else(|| "postgres".into());
        config.user(&user);
        if let Some(pw) = var("PGPASSWORD") {
            config.password(pw);
        }
        config.dbname(var("PGDATABASE").as_deref().unwrap_or(&user));
        let tls = TlsSettings::new(&TlsParams::default().or_env(&var), home(src.env).as_deref())
            .map_err(|reason| ConnectError::InvalidVar {
                var: "PGSSLMODE, PGSSLROOTCERT, PGSSLCERT or PGSSLKEY",
                reason,
            })?;
        Self::finish(config, tls)
    }

    /// Parses a `postgres://` URL or a key/value connection string; `PGSSLMODE`,
    /// `PGSSLROOTCERT`, `PGSSLCERT` and `PGSSLKEY` apply where it names no TLS setting of its
    /// own, as in libpq.
    pub fn parse(url: &str, source_name: &'static str) -> Result<Self, ConnectError> {
        Self::parse_with_env(url, source_name, &|k| std::env::var(k).ok())
    }

    fn parse_with_env(
        url: &str,
        source_name: &'static str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConnectError> {
        let invalid = |reason: String| ConnectError::InvalidUrl {
            url: redact(url),
            source_name,
            reason,
        };
        if url.trim().is_empty() {
            return Err(invalid("it is empty".into()));
        }
        let (rest, params) = tls::extract(url);
        let tls = TlsSettings::new(&params.or_env(env), home(env).as_deref()).map_err(invalid)?;
        let config: Config = rest.parse().map_err(|e: tokio_postgres::Error| {
            // The driver's parse errors describe the fault without echoing the input; redact
            // anyway in case a future version does.
            let msg = e.to_string();
            let src = std::error::Error::source(&e)
                .map(|s| s.to_string())
                .unwrap_or_default();
            invalid(redact(&format!(
                "{msg}{}",
                if src.is_empty() {
                    String::new()
                } else {
                    format!(": {src}")
                }
            )))
        })?;
        if config.get_user().is_none() {
            let mut c = config;
            c.user(std::env::var("USER").as_deref().unwrap_or("postgres"));
            return Self::finish(c, tls);
        }
        Self::finish(config, tls)
    }

    fn finish(mut config: Config, tls: TlsSettings) -> Result<Self, ConnectError> {
        if config.get_hosts().is_empty() {
            config.host("localhost");
        }
        if config.get_dbname().is_none() {
            let user = config.get_user().unwrap_or("postgres").to_owned();
            config.dbname(&user);
        }
        config.application_name("wasmig");
        config.connect_timeout(Duration::from_secs(10));
        config.ssl_mode(tls.mode.driver_mode());
        let connector = tls
            .connector()
            .map_err(|reason| ConnectError::Tls { reason })?;
        let described = describe(&config, &tls);
        Ok(DbTarget {
            config,
            described,
            tls,
            connector,
        })
    }

    /// libpq environment variables for a child program (pg_dump, pg_restore) reaching the
    /// same database as the operator; the password travels only in the child's environment.
    pub fn libpq_env(&self) -> Vec<(&'static str, String)> {
        let c = &self.config;
        let mut v = Vec::new();
        if let Some(h) = c.get_hosts().first() {
            v.push((
                "PGHOST",
                match h {
                    Host::Tcp(h) => h.clone(),
                    Host::Unix(p) => p.display().to_string(),
                },
            ));
        }
        if let Some(p) = c.get_ports().first() {
            v.push(("PGPORT", p.to_string()));
        }
        v.push(("PGUSER", self.user().to_owned()));
        v.push(("PGDATABASE", self.dbname().to_owned()));
        if let Some(pw) = c.get_password() {
            v.push(("PGPASSWORD", String::from_utf8_lossy(pw).into_owned()));
        }
        v.extend(self.tls.libpq_env());
        v
    }

    /// The database name.
    pub fn dbname(&self) -> &str {
        self.config.get_dbname().unwrap_or("")
    }

    /// The operator's role name.
    pub fn user(&self) -> &str {
        self.config.get_user().unwrap_or("")
    }

    /// Connects as the operator.
    pub async fn connect(&self) -> Result<Client, ConnectError> {
        self.connect_with(self.config.clone()).await
    }

    /// Connects as another role (a schema's own role) to the same server and database, with
    /// `options` (e.g. `-c search_path=...`) applied at startup.
    pub async fn connect_as(
        &self,
        role: &str,
        password: &str,
        options: &str,
    ) -> Result<Client, ConnectError> {
        let mut c = self.config.clone();
        c.user(role).password(password).options(options);
        self.connect_with(c).await
    }

    async fn connect_with(&self, config: Config) -> Result<Client, ConnectError> {
        match &self.connector {
            Some(tls) => self.connect_using(config, tls.clone()).await,
            None => self.connect_using(config, NoTls).await,
        }
    }

    async fn connect_using<T>(&self, config: Config, tls: T) -> Result<Client, ConnectError>
    where
        T: MakeTlsConnect<Socket>,
        T::Stream: Send + 'static,
    {
        let user = config.get_user().unwrap_or("").to_owned();
        let (client, connection) =
            config
                .connect(tls)
                .await
                .map_err(|e| ConnectError::Connect {
                    target: self.described.clone(),
                    user,
                    error: Box::new(e.into()),
                })?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!("connection closed: {}", PgError::from(e));
            }
        });
        Ok(client)
    }
}

fn describe(c: &Config, tls: &TlsSettings) -> String {
    let hosts: Vec<String> = c
        .get_hosts()
        .iter()
        .zip(c.get_ports().iter().chain(std::iter::repeat(&5432)))
        .map(|(h, p)| match h {
            Host::Tcp(h) => format!("{h}:{p}"),
            Host::Unix(path) => format!("{}:{p}", path.display()),
        })
        .collect();
    let mode = tls.mode.name();
    format!(
        "postgres://{}@{}/{}{}",
        c.get_user().unwrap_or(""),
        hosts.join(","),
        c.get_dbname().unwrap_or(""),
        if mode == "prefer" {
            String::new()
        } else {
            format!("?sslmode={mode}")
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact("postgres://u:s3cret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(
            redact("postgres://h/db?user=u&password=s3cret"),
            "postgres://h/db?user=u&password=***"
        );
        assert_eq!(
            redact("host=h password=s3cret user=u"),
            "host=h password=*** user=u"
        );
    }

    #[test]
    fn resolves_in_order_and_never_shows_the_password() {
        let env =
            |k: &str| (k == "DATABASE_URL").then(|| "postgres://e:pw1@envhost/envdb".to_owned());
        let t = DbTarget::resolve(&Sources {
            flag: Some("postgres://f:pw2@flaghost:6000/fdb"),
            env: &env,
        })
        .unwrap();
        assert_eq!(t.to_string(), "postgres://f@flaghost:6000/fdb");
        let t = DbTarget::resolve(&Sources {
            flag: None,
            env: &env,
        })
        .unwrap();
        assert_eq!(t.dbname(), "envdb");
        assert!(!format!("{t:?}").contains("pw1"));
        let pg = |k: &str| match k {
            "PGHOST" => Some("pghost".to_owned()),
            "PGPORT" => Some("7000".to_owned()),
            "PGUSER" => Some("op".to_owned()),
            "PGPASSWORD" => Some("pw3".to_owned()),
            _ => None,
        };
        let t = DbTarget::resolve(&Sources {
            flag: None,
            env: &pg,
        })
        .unwrap();
        assert_eq!(t.to_string(), "postgres://op@pghost:7000/op");
        assert!(matches!(
            DbTarget::resolve(&Sources {
                flag: None,
                env: &no_env
            }),
            Err(ConnectError::NotConfigured)
        ));
    }

    #[test]
    fn malformed_urls_are_refused_without_echoing_the_password() {
        for bad in [
            "postgres://u:hunter2@h:notaport/db",
            "postgres://u:hunter2@h/db?sslmode=bogus",
            "",
        ] {
            let e = DbTarget::parse(bad, "--database-url")
                .unwrap_err()
                .to_string();
            assert!(e.contains("invalid database URL"), "{e}");
            assert!(!e.contains("hunter2"), "{e}");
        }
    }
}
