//! Test support: a throwaway PostgreSQL server per test process (initdb + pg_ctl on a free
//! loopback port, scram-sha-256 for every TCP login), one database per test, the real plugin
//! components built from `plugins/`, and a runner for the real `wasmig` binary.

#![allow(dead_code)]

#[path = "pg.rs"]
pub mod pg;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

use tokio_postgres::{Client, NoTls, Row};

pub use pg::{ADMIN_PASSWORD, ADMIN_USER, Durability, Server, pg_bin};

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ has a parent")
        .to_owned()
}

/// The shared server of this test process (fast settings: tests may skip fsync).
pub fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| Server::start(Durability::Fast))
}

/// The plugin components, built once per test process from `plugins/`.
pub fn built_plugins() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let root = repo_root();
        let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args([
                "build",
                "--release",
                "--quiet",
                "--target",
                "wasm32-wasip2",
                "--manifest-path",
            ])
            .arg(root.join("plugins/Cargo.toml"))
            .current_dir(root.join("plugins"))
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_TARGET_DIR")
            .output()
            .expect("run cargo to build the plugins");
        assert!(
            out.status.success(),
            "building plugins failed (is the wasm32-wasip2 target installed?):\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        root.join("plugins/target/wasm32-wasip2/release")
    })
}

/// A directory holding copies of the named plugin components (`carriers`, `notes_v1`, ...).
pub struct PluginDir {
    pub dir: tempfile::TempDir,
}

impl PluginDir {
    pub fn new(names: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = PluginDir { dir };
        p.set(names);
        p
    }

    /// Replaces the directory's plugins with the named ones (other files, such as the lock
    /// file, stay).
    pub fn set(&self, names: &[&str]) {
        for e in std::fs::read_dir(self.dir.path()).expect("read plugin dir") {
            let path = e.expect("entry").path();
            if path.extension().is_some_and(|x| x == "wasm") {
                std::fs::remove_file(path).expect("remove old plugin");
            }
        }
        for n in names {
            self.add_file(n);
        }
    }

    pub fn add_file(&self, name: &str) {
        let src = built_plugins().join(format!("{name}.wasm"));
        std::fs::copy(&src, self.dir.path().join(format!("{name}.wasm")))
            .unwrap_or_else(|e| panic!("copy {}: {e}", src.display()));
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

pub const WORKLOAD: &[&str] = &[
    "reference",
    "carriers",
    "customers",
    "suppliers",
    "finance",
    "demo_seed",
];

/// The one way a test gets a database with wasmig set up: `init`, optionally the shared
/// schema migrated, then tenants created (migrated unless asked otherwise).
#[derive(Debug, Clone)]
pub struct Fleet<'a> {
    label: &'a str,
    plugins: &'a [&'a str],
    tenants: Vec<String>,
    shared_first: bool,
    migrate_tenants: bool,
}

impl<'a> Fleet<'a> {
    /// A fleet in a database of its own (named after `label`) with no plugins yet.
    pub fn new(label: &'a str) -> Self {
        Fleet {
            label,
            plugins: &[],
            tenants: Vec::new(),
            shared_first: false,
            migrate_tenants: true,
        }
    }

    /// The plugin components (names of `plugins/` builds) in its plugin directory.
    pub fn plugins(mut self, plugins: &'a [&'a str]) -> Self {
        self.plugins = plugins;
        self
    }

    /// Tenants created, in one `tenant create`.
    pub fn tenants<S: AsRef<str>>(mut self, names: &[S]) -> Self {
        self.tenants = names.iter().map(|n| n.as_ref().to_owned()).collect();
        self
    }

    /// `migrate --shared` before the tenants are created.
    pub fn shared_first(mut self) -> Self {
        self.shared_first = true;
        self
    }

    /// Tenants created with `--no-migrate`.
    pub fn unmigrated(mut self) -> Self {
        self.migrate_tenants = false;
        self
    }

    /// Sets it up; every command must succeed.
    pub fn build(self) -> (TestDb, PluginDir) {
        let db = TestDb::new(self.label);
        let dir = PluginDir::new(self.plugins);
        db.wasmig(dir.path(), &["init"]).expect(wasmig::Exit::Ok);
        if self.shared_first {
            db.wasmig(dir.path(), &["migrate", "--shared"])
                .expect(wasmig::Exit::Ok);
        }
        if !self.tenants.is_empty() {
            let mut args = vec!["tenant", "create"];
            if !self.migrate_tenants {
                args.push("--no-migrate");
            }
            args.extend(self.tenants.iter().map(String::as_str));
            db.wasmig(dir.path(), &args).expect(wasmig::Exit::Ok);
        }
        (db, dir)
    }
}

/// One database of the shared server, for one test.
pub struct TestDb {
    pub name: String,
    pub url: String,
    rt: tokio::runtime::Runtime,
    client: Client,
}

impl TestDb {
    pub fn new(label: &str) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let srv = server();
        let name = format!("t_{label}_{}", N.fetch_add(1, Ordering::Relaxed));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let admin_url = |db: &str| {
            format!(
                "postgres://{ADMIN_USER}:{ADMIN_PASSWORD}@127.0.0.1:{}/{db}",
                srv.port
            )
        };
        let connect = |url: String| async move {
            let (c, conn) = tokio_postgres::connect(&url, NoTls)
                .await
                .expect("admin connect");
            tokio::spawn(async move {
                let _ = conn.await;
            });
            c
        };
        rt.block_on(async {
            let c = connect(admin_url("postgres")).await;
            c.batch_execute(&format!("CREATE DATABASE {name}"))
                .await
                .expect("create database");
        });
        let url = admin_url(&name);
        let client = rt.block_on(connect(url.clone()));
        TestDb {
            name,
            url,
            rt,
            client,
        }
    }

    /// A login role `op_<db>` (password `op`) that is not a superuser but may create roles and
    /// schemas here (`CREATEROLE`, `CREATE` on the database): the operator of a team without
    /// superuser rights. Returns the URL that logs in as it.
    pub fn non_superuser_operator(&self) -> (String, String) {
        let op = format!("op_{}", self.name);
        self.exec(&format!(
            "CREATE ROLE \"{op}\" LOGIN CREATEROLE PASSWORD 'op'; GRANT CREATE ON DATABASE \"{}\" TO \"{op}\";",
            self.name
        ));
        let url = self.url.replacen(
            &format!("{ADMIN_USER}:{ADMIN_PASSWORD}"),
            &format!("{op}:op"),
            1,
        );
        (op, url)
    }

    /// A session of its own logged in as `user` (over TCP, password auth), for tests that
    /// need another backend holding locks or a transaction open.
    pub fn session_as(&self, user: &str, password: &str) -> Session {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let url = format!(
            "postgres://{user}:{password}@127.0.0.1:{}/{}",
            server().port,
            self.name
        );
        let (client, conn) = rt
            .block_on(tokio_postgres::connect(&url, NoTls))
            .unwrap_or_else(|e| panic!("connect as {user}: {e}"));
        let driver = rt.spawn(async move {
            let _ = conn.await;
        });
        Session {
            rt,
            client,
            _driver: driver,
        }
    }

    pub fn query(&self, sql: &str) -> Vec<Row> {
        self.rt
            .block_on(self.client.query(sql, &[]))
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    pub fn exec(&self, sql: &str) {
        self.rt
            .block_on(self.client.batch_execute(sql))
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// Runs `sql`, returning the server's error instead of panicking.
    pub fn rt_exec(&self, sql: &str) -> Result<(), String> {
        self.rt
            .block_on(self.client.batch_execute(sql))
            .map_err(|e| match e.as_db_error() {
                Some(db) => db.message().to_owned(),
                None => e.to_string(),
            })
    }

    pub fn scalar_i64(&self, sql: &str) -> i64 {
        self.query(sql)[0].get(0)
    }

    pub fn scalar_text(&self, sql: &str) -> Option<String> {
        self.query(sql)[0].get(0)
    }

    /// Number of advisory locks once wasmig's sessions are gone (backends exit a moment after
    /// their clients do): a stale lock would show here.
    pub fn advisory_locks_after_wasmig_left(&self) -> i64 {
        for _ in 0..100 {
            if self.scalar_i64(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'wasmig' AND datname = current_database()",
            ) == 0
            {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        self.scalar_i64(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'
               AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        )
    }

    /// The whole ledger as text, to compare byte for byte.
    pub fn ledger_dump(&self) -> String {
        self.scalar_text(
            "SELECT coalesce(string_agg(row_to_json(l)::text, E'\\n' ORDER BY schema_name, plugin, step_id), '') FROM wasmig.ledger l",
        )
        .unwrap_or_default()
    }

    pub fn table_exists(&self, schema: &str, table: &str) -> bool {
        self.scalar_i64(&format!(
            "SELECT count(*) FROM pg_tables WHERE schemaname = '{schema}' AND tablename = '{table}'"
        )) == 1
    }

    /// Runs the real `wasmig` binary against this database.
    pub fn wasmig(&self, plugins: &Path, args: &[&str]) -> Run {
        let out = self
            .wasmig_command(plugins, args)
            .output()
            .expect("run wasmig");
        Run::from(out, args)
    }

    /// The `wasmig` command [`TestDb::wasmig`] runs, to start it in the background.
    pub fn wasmig_command(&self, plugins: &Path, args: &[&str]) -> Command {
        wasmig_command(&self.url, plugins, args)
    }
}

/// A session of [`TestDb::session_as`].
pub struct Session {
    rt: tokio::runtime::Runtime,
    pub client: Client,
    _driver: tokio::task::JoinHandle<()>,
}

impl Session {
    pub fn exec(&self, sql: &str) -> Result<(), String> {
        self.rt
            .block_on(self.client.batch_execute(sql))
            .map_err(|e| match e.as_db_error() {
                Some(d) => format!("{} ({})", d.message(), d.code().code()),
                None => e.to_string(),
            })
    }

    /// One `bigint` value.
    pub fn scalar_i64(&self, sql: &str) -> i64 {
        self.rt
            .block_on(self.client.query_one(sql, &[]))
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .get(0)
    }

    /// One `text` value (`""` for NULL).
    pub fn scalar_text(&self, sql: &str) -> String {
        self.rt
            .block_on(self.client.query_one(sql, &[]))
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .get::<_, Option<String>>(0)
            .unwrap_or_default()
    }

    /// Whether the server ended this session.
    pub fn is_closed(&self) -> bool {
        self.client.is_closed() || self.exec("SELECT 1").is_err()
    }
}

/// The real `wasmig` binary against `url`, with an environment of the test's own: nothing
/// from the developer's `PG*` TLS settings, `HOME` or shared-schema choice leaks in.
pub fn wasmig_command(url: &str, plugins: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_wasmig"));
    c.args(args)
        .env("DATABASE_URL", url)
        .env("WASMIG_PLUGINS", plugins)
        // Trusted only where it is loaded: a name that matches no plugin draws a warning.
        .env(
            "WASMIG_TRUSTED",
            if ["reference.wasm", "reference_next.wasm"]
                .iter()
                .any(|f| plugins.join(f).exists())
            {
                "reference"
            } else {
                ""
            },
        )
        .env("WASMIG_LOCK_FILE", plugins.join("wasmig.lock"))
        .env("WASMIG_CACHE_DIR", server().dir.join("compile-cache"))
        .env_remove("WASMIG_SHARED_SCHEMA")
        .env_remove("PGHOST")
        .env_remove("PGPASSWORD")
        // No TLS settings or libpq default certificates from the developer's environment.
        .env_remove("PGSSLMODE")
        .env_remove("PGSSLROOTCERT")
        .env_remove("PGSSLCERT")
        .env_remove("PGSSLKEY")
        .env("HOME", server().dir.join("home"));
    c
}

/// What one `wasmig` invocation did.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn from(out: Output, args: &[&str]) -> Run {
        let r = Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        eprintln!(
            "$ wasmig {}\n[exit {}]\n{}{}",
            args.join(" "),
            r.code,
            r.stdout,
            r.stderr
        );
        r
    }

    /// Asserts exit code `code`, showing the output and the server log otherwise.
    #[track_caller]
    pub fn expect(self, exit: wasmig::Exit) -> Run {
        let code = exit as i32;
        if self.code != code {
            let tail: String = server()
                .log()
                .lines()
                .rev()
                .take(30)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n");
            panic!(
                "expected exit {code} ({exit:?}), got {}\nstdout:\n{}\nstderr:\n{}\nserver log (tail):\n{tail}",
                self.code, self.stdout, self.stderr
            );
        }
        self
    }

    /// Stdout as the JSON document of kind `format` (e.g. `wasmig.status/1`): every document
    /// is an object that names its format.
    pub fn doc(&self, format: &str) -> serde_json::Value {
        let v: serde_json::Value = serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", self.stdout));
        assert_eq!(v["format"], format, "document format:\n{}", self.stdout);
        v
    }
}
