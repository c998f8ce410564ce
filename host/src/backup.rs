//! Backups around migrations: `pg_dump` of one schema (custom format) plus a sidecar with that
//! schema's ledger rows, taken under the schema's lock before anything is applied; and the
//! matching restore, which puts back both the schema and its ledger rows.

use std::path::{Path, PathBuf};

use thiserror::Error;
use tokio::process::Command;
use tokio_postgres::Client;

use crate::db::connect::DbTarget;
use crate::names::SchemaName;

/// Why a backup or restore failed.
#[derive(Debug, Error)]
pub enum BackupError {
    /// The dump or restore tool is missing.
    #[error(
        "`{tool}` was not found ({path}); install the PostgreSQL client programs (apt-get install postgresql-client) or set {var}"
    )]
    ToolMissing {
        /// `pg_dump` or `pg_restore`.
        tool: &'static str,
        /// What was tried.
        path: String,
        /// The override variable.
        var: &'static str,
    },
    /// The tool ran and failed.
    #[error("{tool} of schema `{schema}` failed: {reason}")]
    Tool {
        /// `pg_dump` or `pg_restore`.
        tool: &'static str,
        /// Schema.
        schema: String,
        /// Its last stderr line.
        reason: String,
    },
    /// File system.
    #[error("{what} `{path}`: {reason}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// File.
        path: PathBuf,
        /// OS error.
        reason: String,
    },
    /// A database step of the restore.
    #[error("restoring `{schema}`: {reason}")]
    Db {
        /// Schema.
        schema: String,
        /// What failed.
        reason: String,
    },
}

/// How long `pg_dump` waits for a lock on a table before it gives up.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(60);
/// How long one schema's dump may take.
const DUMP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3600);

/// A file-system error of `what` on `path`, for `map_err`.
fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> BackupError {
    let path = path.to_owned();
    move |e| BackupError::Io {
        what,
        path,
        reason: e.to_string(),
    }
}

/// Where dumps go and which programs make them.
#[derive(Debug, Clone)]
pub struct Backups {
    /// Directory for `<schema>-<timestamp>.dump` and `.ledger.json`.
    pub dir: PathBuf,
    pg_dump: PathBuf,
}

/// Finds a PostgreSQL client program: `$var`, else on PATH, else the newest server install.
fn find_tool(tool: &'static str, var: &'static str) -> Result<PathBuf, BackupError> {
    if let Ok(p) = std::env::var(var) {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(BackupError::ToolMissing {
                tool,
                path: p.display().to_string(),
                var,
            })
        };
    }
    let on_path = std::env::var_os("PATH").map(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(tool))
            .find(|p| p.is_file())
    });
    if let Some(Some(p)) = on_path {
        return Ok(p);
    }
    let mut majors: Vec<u32> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|rd| {
            rd.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    majors.sort();
    majors
        .last()
        .map(|m| PathBuf::from(format!("/usr/lib/postgresql/{m}/bin/{tool}")))
        .filter(|p| p.is_file())
        .ok_or(BackupError::ToolMissing {
            tool,
            path: "PATH and /usr/lib/postgresql".into(),
            var,
        })
}

fn libpq_env(cmd: &mut Command, target: &DbTarget) {
    // The password goes through the environment of the child only, never its arguments.
    for (k, v) in target.libpq_env() {
        cmd.env(k, v);
    }
}

fn last_line(stderr: &[u8]) -> String {
    String::from_utf8_lossy(stderr)
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("no output")
        .trim()
        .to_owned()
}

impl Backups {
    /// Checks the directory and finds `pg_dump` before any work starts.
    pub fn new(dir: &Path) -> Result<Self, BackupError> {
        crate::files::create_private_dir(dir).map_err(|e| BackupError::Io {
            what: "cannot create the backup directory",
            path: dir.to_owned(),
            reason: e.to_string(),
        })?;
        Ok(Backups {
            dir: dir.to_owned(),
            pg_dump: find_tool("pg_dump", "WASMIG_PG_DUMP")?,
        })
    }

    /// Dumps `schema` and its ledger rows; returns the dump's path.
    pub async fn dump(
        &self,
        target: &DbTarget,
        op: &Client,
        schema: &SchemaName,
    ) -> Result<PathBuf, BackupError> {
        let stamp = op
            .query_one("SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYYMMDD\"T\"HH24MISSUS\"Z\"')", &[])
            .await
            .map(|r| r.get::<_, String>(0))
            .map_err(|e| BackupError::Db { schema: schema.to_string(), reason: e.to_string() })?;
        let file = self.dir.join(format!("{schema}-{stamp}.dump"));
        // The dump holds tenant data: created 0600 by us, then filled by pg_dump (which
        // truncates it and keeps its mode), then renamed into place once complete.
        let (pending, created) =
            crate::files::Pending::create(&file, crate::files::Access::Private)
                .map_err(io("cannot create", &file))?;
        drop(created);
        let mut cmd = Command::new(&self.pg_dump);
        // Bounded: a table lock another session holds is waited for at most a minute (the
        // schema is then not migrated), and the whole dump at most DUMP_TIMEOUT.
        cmd.kill_on_drop(true)
            .arg(format!("--lock-wait-timeout={}s", LOCK_WAIT.as_secs()))
            .args(["--format=custom", "--no-password", "--schema"])
            .arg(schema.as_str())
            .arg("--file")
            .arg(pending.path());
        libpq_env(&mut cmd, target);
        let out = match tokio::time::timeout(DUMP_TIMEOUT, cmd.output()).await {
            Ok(out) => out.map_err(|e| BackupError::Tool {
                tool: "pg_dump",
                schema: schema.to_string(),
                reason: e.to_string(),
            })?,
            Err(_) => {
                return Err(BackupError::Tool {
                    tool: "pg_dump",
                    schema: schema.to_string(),
                    reason: format!(
                        "did not finish within {} minutes and was stopped",
                        DUMP_TIMEOUT.as_secs() / 60
                    ),
                });
            }
        };
        if !out.status.success() {
            return Err(BackupError::Tool {
                tool: "pg_dump",
                schema: schema.to_string(),
                reason: last_line(&out.stderr),
            });
        }
        let rows = crate::control::ledger_rows_json(op, schema)
            .await
            .map_err(|e| BackupError::Db {
                schema: schema.to_string(),
                reason: e.to_string(),
            })?;
        // The sidecar first: a dump in place always has its ledger rows beside it.
        let side = sidecar(&file);
        crate::files::write_atomic(&side, rows.as_bytes(), crate::files::Access::Private)
            .map_err(io("cannot write", &side))?;
        pending.commit().map_err(io("cannot write", &file))?;
        Ok(file)
    }
}

/// The ledger sidecar of a dump file.
pub fn sidecar(dump: &Path) -> PathBuf {
    dump.with_extension("ledger.json")
}

/// Who the restore runs as: the schema's own role, so that nothing in the dump (functions in
/// CHECK constraints, say) ever runs with the operator's privileges.
pub struct RestoreAs<'a> {
    /// The schema.
    pub schema: &'a SchemaName,
    /// Its role.
    pub role: &'a str,
    /// The role's password.
    pub password: &'a str,
}

/// The archive's table of contents without the schema's own entry (the operator creates the
/// schema for the role, which may not create schemas); checks that the archive holds exactly
/// this schema.
fn restore_list(listing: &str, schema: &SchemaName) -> Result<String, String> {
    let mut out = String::new();
    let mut found = None;
    for line in listing.lines() {
        let entry = line
            .split_once("; ")
            .map(|(_, rest)| rest.split_whitespace().collect::<Vec<_>>());
        if let Some(tokens) = entry
            && tokens.get(2) == Some(&"SCHEMA")
            && tokens.get(3) == Some(&"-")
        {
            found = tokens.get(4).map(|s| (*s).to_owned());
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    match found {
        Some(name) if name == schema.as_str() => Ok(out),
        Some(name) => Err(format!("the dump holds schema `{name}`, not `{schema}`")),
        None => {
            Err("the dump holds no schema (was it made by `wasmig migrate --backup-dir`?)".into())
        }
    }
}

/// Restores a tenant schema from `file`: the current schema is renamed aside, an empty schema
/// owned by the tenant role takes its place, the dump is restored *as that role*, the
/// schema's ledger rows are replaced by those saved with the dump, and the old copy is
/// dropped. On any failure before the end, the original schema is put back.
pub async fn restore(
    target: &DbTarget,
    op: &mut Client,
    who: &RestoreAs<'_>,
    file: &Path,
) -> Result<(), BackupError> {
    // Long: one ordered protocol (check, move aside, pg_restore as the role, ledger rows, put back on failure) sharing the moved-aside state.
    let schema = who.schema;
    let pg_restore = find_tool("pg_restore", "WASMIG_PG_RESTORE")?;
    let tool_err = |reason: String| BackupError::Tool {
        tool: "pg_restore",
        schema: schema.to_string(),
        reason,
    };
    let rows_text = std::fs::read_to_string(sidecar(file)).map_err(|e| BackupError::Io {
        what: "cannot read the ledger saved with the dump",
        path: sidecar(file),
        reason: e.to_string(),
    })?;
    let rows: Vec<serde_json::Value> =
        serde_json::from_str(&rows_text).map_err(|e| BackupError::Io {
            what: "cannot parse the ledger saved with the dump",
            path: sidecar(file),
            reason: e.to_string(),
        })?;
    if let Some(other) = rows.iter().find(|r| r["schema_name"] != schema.as_str()) {
        return Err(tool_err(format!(
            "the saved ledger belongs to schema {}, not `{schema}`",
            other["schema_name"]
        )));
    }
    let listing = Command::new(&pg_restore)
        .arg("--list")
        .arg(file)
        .output()
        .await
        .map_err(|e| tool_err(e.to_string()))?;
    if !listing.status.success() {
        return Err(tool_err(last_line(&listing.stderr)));
    }
    let list = restore_list(&String::from_utf8_lossy(&listing.stdout), schema).map_err(tool_err)?;
    let list_file = file.with_extension("restore-list");
    crate::files::write_atomic(&list_file, list.as_bytes(), crate::files::Access::Private)
        .map_err(|e| BackupError::Io {
            what: "cannot write",
            path: list_file.clone(),
            reason: e.to_string(),
        })?;

    let db = |e: crate::control::ControlError| BackupError::Db {
        schema: schema.to_string(),
        reason: e.to_string(),
    };
    // `wasmig*` schema names are reserved, so the copy set aside can collide with nothing.
    let aside = format!(
        "wasmig_restore_{}",
        &blake3::hash(schema.as_str().as_bytes()).to_hex()[..16]
    );
    let restoring = crate::control::Restoring {
        schema,
        aside: &aside,
        role: who.role,
    };
    if restoring.aside_exists(op).await.map_err(db)? {
        let _ = std::fs::remove_file(&list_file);
        return Err(BackupError::Db {
            schema: schema.to_string(),
            reason: format!(
                "schema `{aside}` is left from an earlier restore; check it and drop it first"
            ),
        });
    }
    // pg_restore logs in as the tenant's role outside any step: the object guard lets the DDL
    // of a session of that role through if it presents this nonce (only pg_restore gets it),
    // for at most an hour.
    let nonce: String = crate::secret::token()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    restoring.begin(op, &nonce).await.map_err(db)?;

    let mut cmd = Command::new(&pg_restore);
    cmd.args([
        "--no-password",
        "--single-transaction",
        "--exit-on-error",
        "--no-owner",
        "--no-privileges",
    ])
    .arg("--use-list")
    .arg(&list_file)
    .arg("--dbname")
    .arg(target.dbname())
    .arg(file);
    libpq_env(&mut cmd, target);
    cmd.env("PGUSER", who.role)
        .env("PGPASSWORD", who.password)
        .env("PGOPTIONS", format!("-c wasmig.restore_nonce={nonce}"));
    let restored = cmd.output().await;
    let _ = std::fs::remove_file(&list_file);
    let failed = match restored {
        Ok(o) if o.status.success() => None,
        Ok(o) => Some(tool_err(last_line(&o.stderr))),
        Err(e) => Some(tool_err(e.to_string())),
    };
    if let Some(e) = failed {
        if let Err(back) = restoring.abandon(op).await {
            tracing::warn!("{back}");
        }
        return Err(e);
    }
    if let Err(e) = restoring.complete(op, &rows_text).await {
        if let Err(back) = restoring.abandon(op).await {
            tracing::warn!("{back}");
        }
        return Err(db(e));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_restore_list_drops_only_the_schema_entry_and_checks_its_name() {
        let listing = ";\n; Archive created\n215; 2615 16390 SCHEMA - b1 t_b1\n216; 1259 16391 TABLE b1 notes t_b1\n";
        let s = SchemaName::parse("b1").unwrap();
        let list = restore_list(listing, &s).unwrap();
        assert!(!list.contains("SCHEMA - b1"));
        assert!(list.contains("TABLE b1 notes"));
        let other = SchemaName::parse("b2").unwrap();
        assert!(
            restore_list(listing, &other)
                .unwrap_err()
                .contains("holds schema `b1`")
        );
        assert!(restore_list("216; 1259 16391 TABLE b1 notes t\n", &s).is_err());
    }
}

/// Where a run's dumps go and how long they are kept, from the command's flags over the
/// config file's `backup_dir` and `backup_keep_days`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// The backup directory.
    pub dir: PathBuf,
    /// After a run, dumps older than this many days are removed (the newest of each schema
    /// is always kept); none: kept for ever.
    pub keep_days: Option<u32>,
}

/// Seconds since the Unix epoch of a dump's stamp (`YYYYMMDDTHHMMSSffffffZ`, as
/// [`Backups::dump`] names files), or none when it is not one.
fn stamp_seconds(stamp: &str) -> Option<i64> {
    let b = stamp.as_bytes();
    if b.len() != 22 || b[8] != b'T' || b[21] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let s = stamp.get(r)?;
        s.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| s.parse().ok())
            .flatten()
    };
    let (y, m, d) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (hh, mm, ss) = (num(9..11)?, num(11..13)?, num(13..15)?);
    num(15..21)?;
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    // Days from the civil date (proleptic Gregorian), after Howard Hinnant's algorithm.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hh * 3600 + mm * 60 + ss)
}

/// Of the file names in a backup directory, the dumps to remove: those wasmig wrote
/// (`<schema>-<stamp>.dump` with its `<schema>-<stamp>.ledger.json` beside it, which wasmig
/// writes before the dump is in place) and stamped before `cutoff` (Unix seconds), except the
/// newest dump of each schema. Files of any other name, a dump without its sidecar, and a
/// stamp after `now` (a clock that was wrong) are never chosen, nor counted as the newest.
pub fn expired(names: &[String], cutoff: i64, now: i64) -> Vec<&str> {
    let mut by_schema: std::collections::BTreeMap<&str, Vec<(i64, &str)>> = Default::default();
    let present: std::collections::HashSet<&str> = names.iter().map(String::as_str).collect();
    for name in names {
        let Some(stem) = name.strip_suffix(".dump") else {
            continue;
        };
        if !present.contains(format!("{stem}.ledger.json").as_str()) {
            continue;
        }
        let Some((schema, stamp)) = stem.rsplit_once('-') else {
            continue;
        };
        if SchemaName::parse_shared(schema).is_err() {
            continue;
        }
        if let Some(at) = stamp_seconds(stamp).filter(|at| *at <= now + 86_400) {
            by_schema.entry(schema).or_default().push((at, name));
        }
    }
    let mut out = Vec::new();
    for (_, mut dumps) in by_schema {
        dumps.sort_unstable();
        dumps.pop();
        out.extend(
            dumps
                .into_iter()
                .filter(|(at, _)| *at < cutoff)
                .map(|(_, n)| n),
        );
    }
    out.sort_unstable();
    out
}

/// Removes from `dir` the dumps (and their ledger sidecars) older than `keep_days` days, the
/// newest of each schema kept; returns how many dumps went.
pub fn prune(dir: &Path, keep_days: u32) -> Result<usize, BackupError> {
    let names: Vec<String> = std::fs::read_dir(dir)
        .map_err(io("cannot list the backup directory", dir))?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let cutoff = now - i64::from(keep_days) * 86_400;
    let gone = expired(&names, cutoff, now);
    for name in &gone {
        let dump = dir.join(name);
        // The sidecar first: a dump left without one could not be restored.
        let side = sidecar(&dump);
        match std::fs::remove_file(&side) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(io("cannot remove", &side)(e));
            }
            _ => {}
        }
        std::fs::remove_file(&dump).map_err(io("cannot remove", &dump))?;
    }
    Ok(gone.len())
}

#[cfg(test)]
mod retention_tests {
    use super::{expired, stamp_seconds};

    #[test]
    fn stamps_read_as_utc_seconds() {
        assert_eq!(stamp_seconds("19700101T000000000000Z"), Some(0));
        assert_eq!(stamp_seconds("20000301T000000000000Z"), Some(951_868_800));
        assert_eq!(stamp_seconds("20261208T013500123456Z"), Some(1_796_693_700));
        for bad in [
            "2026120T013500123456Z",
            "20261308T013500123456Z",
            "20261208X013500123456Z",
            "2026120a013500123456Z",
        ] {
            assert_eq!(stamp_seconds(bad), None, "{bad}");
        }
    }

    #[test]
    fn only_older_dumps_of_wasmigs_naming_go_and_the_newest_of_each_schema_stays() {
        let mut names: Vec<String> = Vec::new();
        for dump in [
            "acme-20200101T000000000000Z",
            "acme-20200102T000000000000Z",
            "acme-20261201T000000000000Z",
            "old_only-20190101T000000000000Z",
            "old_only-20180101T000000000000Z",
            "Not-A-Schema-20100101T000000000000Z",
            "future-20200101T000000000000Z",
            "future-29990101T000000000000Z",
        ] {
            names.push(format!("{dump}.dump"));
            names.push(format!("{dump}.ledger.json"));
        }
        // Someone's own pg_dump output, named like ours but without a sidecar.
        names.push("handmade-20100101T000000000000Z.dump".into());
        names.push("notes.txt".into());
        names.push("x-2010.dump".into());
        let cutoff = stamp_seconds("20261101T000000000000Z").unwrap();
        let now = stamp_seconds("20261208T000000000000Z").unwrap();
        // A stamp from a wrong clock is never the newest: the real newest of `future` stays.
        assert_eq!(
            expired(&names, cutoff, now),
            [
                "acme-20200101T000000000000Z.dump",
                "acme-20200102T000000000000Z.dump",
                "old_only-20180101T000000000000Z.dump",
            ]
        );
    }
}
