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

pub use super::redact::redact;

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
    /// The server accepted the connection but did not finish the login in time.
    #[error(
        "cannot connect to {target} as `{user}`: no answer within {secs} s ({origin}); check that the host and port are PostgreSQL's, or raise connect_timeout"
    )]
    Timeout {
        /// Redacted target description.
        target: String,
        /// The role used.
        user: String,
        /// The bound, in seconds.
        secs: u64,
        /// Where the bound came from.
        origin: &'static str,
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

/// The server ends any one operator statement that runs longer (a lock it waits on, a
/// stalled server): 5 minutes.
pub const OPERATOR_STATEMENT_TIMEOUT_MS: u64 = 300_000;

/// Validated connection settings for the operator's (privileged) connection.
#[derive(Clone)]
pub struct DbTarget {
    config: Config,
    described: String,
    /// The bound of one connection attempt (TCP, TLS, startup and authentication together).
    connect_timeout: ConnectTimeout,
    /// Where the settings came from (`--database-url`, `DATABASE_URL`, ...).
    origin: &'static str,
    /// Printed on stderr once, just before the first connection (which database this is).
    announcement: Option<std::sync::Arc<(std::sync::Once, String)>>,
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

/// How long one connection attempt may take, with libpq's meaning of `connect_timeout`:
/// whole seconds, at least 2 (a smaller positive value counts as 2), per host tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectTimeout {
    /// The bound.
    pub secs: u64,
    /// Where it came from, for messages.
    pub origin: &'static str,
}

/// Without `connect_timeout` or `PGCONNECT_TIMEOUT`, an attempt may take this long.
pub const DEFAULT_CONNECT_TIMEOUT_S: u64 = 10;

impl ConnectTimeout {
    /// `connect_timeout` from the connection string, else `PGCONNECT_TIMEOUT`, else the
    /// default. Zero or negative means "wait forever" to libpq; wasmig bounds every network
    /// wait, so it refuses that rather than silently picking a bound.
    fn resolve(
        url: Option<&str>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConnectError> {
        let (raw, origin) = match url.and_then(|u| tls::param(u, "connect_timeout")) {
            Some(v) => (v, "connect_timeout"),
            None => match env("PGCONNECT_TIMEOUT").filter(|v| !v.trim().is_empty()) {
                Some(v) => (v, "PGCONNECT_TIMEOUT"),
                None => {
                    return Ok(ConnectTimeout {
                        secs: DEFAULT_CONNECT_TIMEOUT_S,
                        origin: "wasmig's default connect timeout",
                    });
                }
            },
        };
        let bad = |why: &str| ConnectError::InvalidVar {
            var: origin,
            reason: format!("`{}` {why}", crate::text::inert(&raw, 40)),
        };
        let n: i64 = raw
            .trim()
            .parse()
            .map_err(|_| bad("is not a whole number of seconds"))?;
        if n <= 0 {
            return Err(bad(
                "means wait forever; wasmig bounds every network wait: give a number of seconds (at least 2)",
            ));
        }
        Ok(ConnectTimeout {
            secs: (n as u64).max(2),
            origin,
        })
    }
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
        let timeout = ConnectTimeout::resolve(None, src.env)?;
        Self::finish(config, tls, timeout, "the PG* variables")
    }

    /// Parses a `postgres://` URL or a key/value connection string; `PGSSLMODE`,
    /// `PGSSLROOTCERT`, `PGSSLCERT` and `PGSSLKEY` from `env` apply where it names no TLS
    /// setting of its own, as in libpq (`env` also gives `PGCONNECT_TIMEOUT` and `USER`; the
    /// process's own environment is never read here).
    pub fn parse_with_env(
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
        let timeout = ConnectTimeout::resolve(Some(url), env)?;
        let mut config = config;
        if config.get_user().is_none() {
            config.user(
                env("USER")
                    .filter(|u| !u.is_empty())
                    .as_deref()
                    .unwrap_or("postgres"),
            );
        }
        let keepalive_set = [
            "keepalives_idle",
            "keepalives_interval",
            "keepalives_retries",
        ]
        .iter()
        .any(|k| tls::param(url, k).is_some());
        let mut t = Self::finish(config, tls, timeout, source_name)?;
        if !keepalive_set {
            t.default_keepalives();
        }
        Ok(t)
    }

    /// Dead peers are noticed within about a minute, not after the kernel's two hours.
    fn default_keepalives(&mut self) {
        self.config
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(30))
            .keepalives_interval(Duration::from_secs(10))
            .keepalives_retries(3);
    }

    fn finish(
        mut config: Config,
        tls: TlsSettings,
        timeout: ConnectTimeout,
        origin: &'static str,
    ) -> Result<Self, ConnectError> {
        if config.get_hosts().is_empty() {
            config.host("localhost");
        }
        if config.get_dbname().is_none() {
            let user = config.get_user().unwrap_or("postgres").to_owned();
            config.dbname(&user);
        }
        config.application_name("wasmig");
        config.connect_timeout(Duration::from_secs(timeout.secs));
        // Operator statements cannot wait forever on a lock or a stalled server: the server
        // ends any one of them after this long (the operator's own `-c statement_timeout`
        // in `options`, coming later, wins).
        let options = format!(
            "-c statement_timeout={OPERATOR_STATEMENT_TIMEOUT_MS} {}",
            config.get_options().unwrap_or("")
        );
        config.options(options.trim_end());
        config.ssl_mode(tls.mode.driver_mode());
        let connector = tls
            .connector()
            .map_err(|reason| ConnectError::Tls { reason })?;
        let described = describe(&config, &tls);
        let mut t = DbTarget {
            config,
            described,
            connect_timeout: timeout,
            origin,
            announcement: None,
            tls,
            connector,
        };
        t.default_keepalives();
        Ok(t)
    }

    /// Where the settings came from: `--database-url`, `DATABASE_URL`, `the config file`,
    /// `the PG* variables`.
    pub fn origin(&self) -> &'static str {
        self.origin
    }

    /// Prints `text` on stderr once, before the first connection of this target or any of
    /// its clones: a command that fails before touching the database prints nothing.
    pub fn announce(mut self, text: String) -> Self {
        self.announcement = Some(std::sync::Arc::new((std::sync::Once::new(), text)));
        self
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
        v.push(("PGCONNECT_TIMEOUT", self.connect_timeout.secs.to_string()));
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

    /// Connects a plugin session: as a schema's own role, with `options` at startup, over a
    /// connection whose server messages are cut ([`super::cut`]: errors and notices to a
    /// bounded size, result rows over `row_cap` bytes refused) before the driver holds them.
    /// The server's notices are logged inert, never printed. Tries the configured hosts in
    /// order, the whole attempt bounded like the operator's.
    pub async fn connect_session(
        &self,
        role: &str,
        password: &str,
        options: &str,
        row_cap: usize,
    ) -> Result<Client, ConnectError> {
        if let Some(a) = &self.announcement {
            a.0.call_once(|| crate::errln!("{}", a.1));
        }
        let mut config = self.config.clone();
        config.user(role).password(password).options(options);
        let hosts = config.get_hosts().len().max(1) as u64;
        let bound = Duration::from_secs(self.connect_timeout.secs * hosts);
        let attempt = async {
            let mut last = None;
            for (i, host) in config.get_hosts().iter().enumerate() {
                let port = config
                    .get_ports()
                    .get(i)
                    .or_else(|| config.get_ports().first())
                    .copied()
                    .unwrap_or(5432);
                match self.session_on(&config, host, port, row_cap).await {
                    Ok(client) => return Ok(client),
                    Err(e) => last = Some(e),
                }
            }
            Err(last.unwrap_or_else(|| PgError::client("no host to connect to".to_owned())))
        };
        match tokio::time::timeout(bound, attempt).await {
            Ok(r) => r.map_err(|e| ConnectError::Connect {
                target: self.described.clone(),
                user: role.to_owned(),
                error: Box::new(e),
            }),
            Err(_) => Err(ConnectError::Timeout {
                target: self.described.clone(),
                user: role.to_owned(),
                secs: bound.as_secs(),
                origin: self.connect_timeout.origin,
            }),
        }
    }

    /// One plugin session on `host`:`port`.
    async fn session_on(
        &self,
        config: &Config,
        host: &Host,
        port: u16,
        row_cap: usize,
    ) -> Result<Client, PgError> {
        let socket = super::cut::Socket::open(host, port, config)
            .await
            .map_err(|e| PgError::client(e.to_string()))?;
        let stream = super::cut::Cut::new(socket, row_cap);
        match &self.connector {
            Some(tls) => {
                let mut make = super::cut::CutTls::new(tls.clone(), row_cap);
                let name = match host {
                    Host::Tcp(name) => name.as_str(),
                    #[cfg(unix)]
                    Host::Unix(_) => "",
                };
                let connect =
                    MakeTlsConnect::<super::cut::Cut<super::cut::Socket>>::make_tls_connect(
                        &mut make, name,
                    )
                    .map_err(|e| PgError::client(format!("TLS: {e}")))?;
                let (client, connection) = config.connect_raw(stream, connect).await?;
                super::cut::drive(connection);
                Ok(client)
            }
            None => {
                let (client, connection) = config.connect_raw(stream, NoTls).await?;
                super::cut::drive(connection);
                Ok(client)
            }
        }
    }

    async fn connect_with(&self, config: Config) -> Result<Client, ConnectError> {
        if let Some(a) = &self.announcement {
            a.0.call_once(|| crate::errln!("{}", a.1));
        }
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
        // The driver bounds only the TCP connect; a server that accepts and never speaks
        // would hold TLS or the startup forever. libpq bounds the whole attempt, per host.
        let hosts = config.get_hosts().len().max(1) as u64;
        let bound = Duration::from_secs(self.connect_timeout.secs * hosts);
        let (client, connection) = match tokio::time::timeout(bound, config.connect(tls)).await {
            Ok(r) => r.map_err(|e| ConnectError::Connect {
                target: self.described.clone(),
                user,
                error: Box::new(e.into()),
            })?,
            Err(_) => {
                return Err(ConnectError::Timeout {
                    target: self.described.clone(),
                    user,
                    secs: bound.as_secs(),
                    origin: self.connect_timeout.origin,
                });
            }
        };
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
        // Malformed URLs, quoted values, and passwords holding the separators.
        for (raw, want) in [
            (
                "postgres//u:s3cret@localhost/db",
                "postgres//u:***@localhost/db",
            ),
            (
                "postgres:/u:s3cret@localhost/db",
                "postgres:/u:***@localhost/db",
            ),
            (
                "postgresql:u:s3cret@localhost/db",
                "postgresql:u:***@localhost/db",
            ),
            ("u:s3cret@localhost/db", "u:***@localhost/db"),
            ("postgres://u:s3:c/r@t@h/db", "postgres://u:***@h/db"),
            (
                "error: `postgres//u:s3cret@h/db` is bad",
                "error: `postgres//u:***@h/db` is bad",
            ),
            (
                "host=h password = 's3 cr\\'et' user=u",
                "host=h password = *** user=u",
            ),
            (
                "postgres://h/db?PASSWORD=s3cret&x=1",
                "postgres://h/db?PASSWORD=***&x=1",
            ),
            ("sslpassword=s3cret", "sslpassword=***"),
            ("no password here", "no password here"),
        ] {
            assert_eq!(redact(raw), want, "{raw}");
            assert!(!redact(raw).contains("s3"), "{raw}");
        }
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
            let e = DbTarget::parse_with_env(bad, "--database-url", &|_| None)
                .unwrap_err()
                .to_string();
            assert!(e.contains("invalid database URL"), "{e}");
            assert!(!e.contains("hunter2"), "{e}");
        }
    }
}
