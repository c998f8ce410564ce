//! The lock watchdog. PostgreSQL bounds no session's locks, and every lock a step holds takes
//! a slot of the server-wide lock table (`max_locks_per_transaction` x (`max_connections` +
//! `max_prepared_transactions`)): when it is full, every new connection fails with "out of
//! shared memory", the application's included. While steps run, one operator session polls
//! the locks held by the schema roles of those steps and ends a step's session once it holds
//! more than its limit, which by default leaves half of the table to everyone else.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio_postgres::Client;

/// How often the watchdog looks.
const POLL: Duration = Duration::from_millis(100);
/// The longest the watchdog waits for one answer: a server that stops answering must not
/// keep the run from ending (the run stops the watchdog only between polls).
const ANSWER_WITHIN: Duration = Duration::from_secs(5);

/// `fut` within [`ANSWER_WITHIN`], its timeout reported as an error.
async fn bounded<T>(
    fut: impl std::future::Future<Output = Result<T, tokio_postgres::Error>>,
) -> Result<T, String> {
    match tokio::time::timeout(ANSWER_WITHIN, fut).await {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(_) => Err(format!("no answer within {}s", ANSWER_WITHIN.as_secs())),
    }
}

/// A step past its lock limit: what it held when it was stopped, and the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverLimit {
    /// Locks the step's session held.
    pub held: u64,
    /// Its limit.
    pub limit: u64,
}

impl OverLimit {
    /// The step's failure, naming the limit and its key.
    pub fn message(&self) -> String {
        format!(
            "the step held {} locks, more than its limit of {} (max_locks); its session was ended before the server's shared lock table filled up",
            self.held, self.limit
        )
    }
}

#[derive(Debug)]
struct Watched {
    limit: u64,
    over: Option<OverLimit>,
}

/// The steps being watched, by schema role (a role has one session running steps at a time).
#[derive(Debug, Default)]
pub struct LockWatch {
    steps: Mutex<HashMap<String, Watched>>,
    /// The limit of a step whose plugin sets none (`0` until the server's size is known).
    default_limit: AtomicU64,
}

impl LockWatch {
    /// The default limit for `jobs` parallel steps on a server whose lock table holds
    /// `capacity` locks: together they may take half of it.
    pub fn default_limit_for(capacity: u64, jobs: usize) -> u64 {
        (capacity / (2 * (jobs as u64 + 1))).max(64)
    }

    /// Sets the default limit from the server's settings.
    pub async fn size_from_server(&self, client: &Client, jobs: usize) {
        let capacity = bounded(client.query_one(
            "SELECT (current_setting('max_locks_per_transaction')::bigint
                     * (current_setting('max_connections')::bigint
                        + current_setting('max_prepared_transactions')::bigint))",
            &[],
        ))
        .await
        .map(|r| r.get::<_, i64>(0));
        match capacity {
            Ok(c) => self.default_limit.store(
                Self::default_limit_for(u64::try_from(c).unwrap_or(0), jobs),
                Ordering::Relaxed,
            ),
            Err(e) => tracing::warn!("could not read the server's lock table size: {e}"),
        }
    }

    /// Starts watching a step of `role`; `limit` of `None` means the default.
    pub fn start(&self, role: &str, limit: Option<u64>) {
        let limit = limit.unwrap_or_else(|| self.default_limit.load(Ordering::Relaxed));
        if let Ok(mut m) = self.steps.lock() {
            m.insert(role.to_owned(), Watched { limit, over: None });
        }
    }

    /// Stops watching `role`'s step; says whether it went over its limit.
    pub fn finish(&self, role: &str) -> Option<OverLimit> {
        self.steps
            .lock()
            .ok()
            .and_then(|mut m| m.remove(role))
            .and_then(|w| w.over)
    }

    /// Polls until `stop` is set: ends the session of every watched step over its limit.
    pub async fn run(&self, client: &Client, stop: &AtomicBool) {
        while !stop.load(Ordering::Relaxed) {
            tokio::time::sleep(POLL).await;
            let roles: Vec<String> = match self.steps.lock() {
                Ok(m) => m
                    .iter()
                    .filter(|(_, w)| w.limit > 0 && w.over.is_none())
                    .map(|(r, _)| r.clone())
                    .collect(),
                Err(_) => return,
            };
            if roles.is_empty() {
                continue;
            }
            let held = match bounded(client.query(
                "SELECT a.usename::text, count(*)::bigint
                   FROM pg_catalog.pg_locks l JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid
                  WHERE a.usename = ANY($1)
                  GROUP BY a.usename",
                &[&roles],
            ))
            .await
            {
                Ok(rows) => rows,
                Err(e) => {
                    tracing::warn!("the lock watchdog could not read pg_locks: {e}");
                    continue;
                }
            };
            self.roll_back_prepared(client, &roles).await;
            for row in held {
                let (role, n): (String, i64) = (row.get(0), row.get(1));
                let n = u64::try_from(n).unwrap_or(0);
                let over = match self.steps.lock() {
                    Ok(mut m) => match m.get_mut(&role) {
                        Some(w) if n > w.limit => {
                            w.over = Some(OverLimit {
                                held: n,
                                limit: w.limit,
                            });
                            true
                        }
                        _ => false,
                    },
                    Err(_) => false,
                };
                if over {
                    // Ended, not cancelled: a plugin idle inside its transaction keeps its
                    // locks through a cancel. The operator is a member of every schema role.
                    if let Err(e) = bounded(client.execute(
                        "SELECT pg_catalog.pg_terminate_backend(pid)
                           FROM pg_catalog.pg_stat_activity WHERE usename = $1",
                        &[&role],
                    ))
                    .await
                    {
                        tracing::error!("could not end the session of role `{role}`: {e}");
                    }
                }
            }
        }
    }
}

impl LockWatch {
    /// A transaction prepared as a watched schema role, or as a group it belongs to, is
    /// detached from every session: its locks (listed with no pid) would count against no
    /// step and stay until someone rolls it back. No step may leave one, so each is rolled
    /// back at once, found by its transaction id.
    async fn roll_back_prepared(&self, client: &Client, roles: &[String]) {
        let prepared = match bounded(client.query(
            "SELECT p.gid, p.owner::text,
                    (SELECT count(*) FROM pg_catalog.pg_locks h
                      WHERE h.pid IS NULL AND h.virtualtransaction = l.virtualtransaction)::bigint
               FROM pg_catalog.pg_prepared_xacts p
               JOIN pg_catalog.pg_locks l ON l.locktype = 'transactionid'
                                          AND l.transactionid = p.transaction AND l.pid IS NULL
              WHERE p.database = pg_catalog.current_database()
                AND (p.owner = ANY($1)
                     OR p.owner IN (SELECT m.roleid::regrole::text FROM pg_catalog.pg_auth_members m
                                     WHERE m.member::regrole::text = ANY($1)))",
            &[&roles],
        ))
        .await
        {
            Ok(rows) => rows,
            Err(e) => {
                tracing::warn!("the lock watchdog could not read pg_prepared_xacts: {e}");
                return;
            }
        };
        for row in prepared {
            let (gid, owner, locks): (String, String, i64) = (row.get(0), row.get(1), row.get(2));
            let Some(gid_lit) = crate::db::quote::literal(&gid) else {
                continue;
            };
            match bounded(client.batch_execute(&format!("ROLLBACK PREPARED {gid_lit}"))).await {
                Ok(()) => tracing::warn!(
                    "rolled back a transaction prepared as role `{}` ({}), which held {locks} locks",
                    crate::text::inert(&owner, 80),
                    crate::text::inert(&gid, 80)
                ),
                Err(e) => tracing::error!(
                    "could not roll back a transaction prepared as role `{}`: {e}",
                    crate::text::inert(&owner, 80)
                ),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_leaves_half_the_lock_table_to_others() {
        // PostgreSQL's defaults: 64 x (100 + 0).
        assert_eq!(LockWatch::default_limit_for(6400, 2), 1066);
        assert!(LockWatch::default_limit_for(6400, 8) * 9 <= 3200);
        assert_eq!(LockWatch::default_limit_for(0, 4), 64);
    }

    #[test]
    fn a_step_over_its_limit_is_reported_once_finished() {
        let w = LockWatch::default();
        w.default_limit.store(100, Ordering::Relaxed);
        w.start("r", None);
        if let Ok(mut m) = w.steps.lock()
            && let Some(s) = m.get_mut("r")
        {
            assert_eq!(s.limit, 100);
            s.over = Some(OverLimit {
                held: 150,
                limit: 100,
            });
        }
        let over = w.finish("r").expect("over");
        assert!(
            over.message()
                .contains("150 locks, more than its limit of 100 (max_locks)")
        );
        assert_eq!(w.finish("r"), None);
        w.start("q", Some(5));
        assert_eq!(w.finish("q"), None);
    }
}
