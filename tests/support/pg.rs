//! A throwaway PostgreSQL server: initdb + pg_ctl on a free loopback port, run as the
//! `postgres` OS user when we are root, scram-sha-256 for every TCP login, stopped and
//! removed when the process that started it exits. Shared by the tests (fast settings) and
//! the benchmark (PostgreSQL's default durability).

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const ADMIN_USER: &str = "wasmig_admin";
pub const ADMIN_PASSWORD: &str = "admin-pw-7f3a9c";

/// How the server treats durability.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// `fsync=off`, `synchronous_commit=off`: for tests only.
    Fast,
    /// PostgreSQL's defaults: for benchmarks.
    Default,
}

/// A running server.
pub struct Server {
    pub port: u16,
    pub dir: PathBuf,
}

pub fn pg_bin(tool: &str) -> PathBuf {
    if let Ok(dir) = std::env::var("PG_BIN") {
        return Path::new(&dir).join(tool);
    }
    let mut majors: Vec<u32> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|rd| {
            rd.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    majors.sort();
    let major = majors
        .last()
        .expect("PostgreSQL server binaries in /usr/lib/postgresql (apt-get install postgresql)");
    PathBuf::from(format!("/usr/lib/postgresql/{major}/bin/{tool}"))
}

/// When running as root, hands `path` (recursively) to the `postgres` OS user the server
/// runs as.
pub fn give_to_postgres(path: &Path) {
    if is_root() {
        let st = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(path)
            .status()
            .expect("chown");
        assert!(st.success(), "chown of {} failed", path.display());
    }
}

pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// The address space each process of the tests' server may map: far above what PostgreSQL
/// needs here, far below what this machine can give one process.
pub const SERVER_ADDRESS_SPACE: u64 = 2 << 30;

/// Runs a PostgreSQL tool, as the `postgres` OS user when we are root (PostgreSQL refuses
/// to run as root).
fn pg_tool(tool: &str, args: &[&str]) -> Output {
    // `pg_ctl_capped`: pg_ctl under `prlimit --as`, the address-space cap of each server
    // process.
    let (bin, cap) = match tool.strip_suffix("_capped") {
        Some(t) => (pg_bin(t), Some(SERVER_ADDRESS_SPACE)),
        None => (pg_bin(tool), None),
    };
    let mut cmd = if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]);
        c
    } else {
        Command::new("env")
    };
    if let Some(bytes) = cap {
        cmd.arg("prlimit").arg(format!("--as={bytes}")).arg("--");
    }
    cmd.arg(&bin);
    cmd.args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind a free port")
        .local_addr()
        .expect("addr")
        .port()
}

impl Server {
    pub fn start(durability: Durability) -> Server {
        // Unique per server, so that several servers of one process never share a directory.
        static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let base = std::env::temp_dir().join(format!(
            "wasmig-pg-{}-{n}-{durability:?}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(&base).expect("create server dir");
        let data = base.join("data");
        let pwfile = base.join("pwfile");
        std::fs::write(&pwfile, ADMIN_PASSWORD).expect("write pwfile");
        give_to_postgres(&base);
        let mut initdb = vec![
            "-D",
            data.to_str().expect("utf8 path"),
            "-U",
            ADMIN_USER,
            "--pwfile",
            pwfile.to_str().expect("utf8 path"),
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
        ];
        if durability == Durability::Fast {
            initdb.push("--no-sync");
        }
        let out = pg_tool("initdb", &initdb);
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = free_port();
        let mut opts = format!(
            "-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={} -c max_connections=400",
            base.display()
        );
        if durability == Durability::Fast {
            opts.push_str(" -c fsync=off -c synchronous_commit=off -c full_page_writes=off");
            // The fleet-scale test reads each statement's buffers (`tests/scale.rs`); the
            // hostile suite prepares transactions (they must be possible to be refused).
            opts.push_str(
                " -c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.track=all -c max_prepared_transactions=10",
            );
        } else {
            // The benchmark's baseline for `verify --structure` is one `pg_dump
            // --schema-only` of a 10,000-tenant fleet, which locks every table (120,000) in
            // one transaction: the lock table must hold them (512 x 400 slots).
            opts.push_str(" -c max_locks_per_transaction=512");
        }
        let log = base.join("server.log");
        // The tests' server runs under an address-space cap per process (as a production
        // server should, see README): a backend that a plugin makes allocate without bound
        // ends in an "out of memory" error, not in the kernel's OOM killer ending the
        // machine's processes. The cap is inherited by every backend.
        let pg_ctl = if durability == Durability::Fast {
            "pg_ctl_capped"
        } else {
            "pg_ctl"
        };
        let out = pg_tool(
            pg_ctl,
            &[
                "-D",
                data.to_str().expect("utf8"),
                "-l",
                log.to_str().expect("utf8"),
                "-o",
                &opts,
                "-w",
                "start",
            ],
        );
        if !out.status.success() {
            panic!(
                "pg_ctl start failed: {}\n{}",
                String::from_utf8_lossy(&out.stderr),
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        // Stop the server and remove its files when this process exits, however it exits.
        // The watchdog outlives us on purpose, so it is never waited for.
        let stop = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; {runas}{pg_ctl} -D {data} -m immediate stop >/dev/null 2>&1; rm -rf {base}",
            pid = std::process::id(),
            runas = if is_root() {
                "runuser -u postgres -- "
            } else {
                ""
            },
            pg_ctl = pg_bin("pg_ctl").display(),
            data = data.display(),
            base = base.display(),
        );
        #[allow(clippy::zombie_processes)]
        Command::new("sh")
            .args(["-c", &stop])
            .spawn()
            .expect("spawn the server watchdog");
        Server { port, dir: base }
    }

    /// Restarts the server (fast shutdown: open sessions are cut), waiting until it is up.
    pub fn restart(&self) {
        let data = self.dir.join("data");
        let log = self.dir.join("server.log");
        // `-l` as at start: without it the new postmaster keeps pg_ctl's output pipes open and
        // waiting for pg_ctl's output never ends.
        let out = pg_tool(
            "pg_ctl_capped",
            &[
                "-D",
                data.to_str().expect("utf8"),
                "-l",
                log.to_str().expect("utf8"),
                "-m",
                "fast",
                "-w",
                "restart",
            ],
        );
        assert!(
            out.status.success(),
            "pg_ctl restart failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    /// The admin URL of database `db`.
    pub fn url(&self, db: &str) -> String {
        format!(
            "postgres://{ADMIN_USER}:{ADMIN_PASSWORD}@127.0.0.1:{}/{db}",
            self.port
        )
    }
}
