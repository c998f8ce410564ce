//! The queue of schemas a run works through, and the workers that drain it. Each worker owns
//! an operator connection and a small look-ahead: the role logins of the next schemas
//! (started early, as a login is a new server backend) and the lock and ledger of the next
//! one (read while the current schema runs), so a schema costs almost no round trip of its
//! own on the operator connection.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_postgres::Client;

use super::schema::Prefetch;
use super::{Fleet, Grants, Outcome, RunOptions, SchemaReport, interrupted, report};
use crate::control;
use crate::names::SchemaName;
use crate::plan::{LedgerEntry, Target};

/// How many schema-role logins each worker keeps under way beyond the schema it is on.
pub(crate) const LOGINS_AHEAD: usize = 2;

/// What taking a schema's lock gives: its ledger, or `None` when another runner holds it.
type LockResult = Result<Option<Vec<LedgerEntry>>, control::ControlError>;

/// A schema waiting in the queue, with how often it was found locked by another runner.
struct Queued {
    target: Target,
    attempts: u32,
}

/// A schema a worker has taken, with its role login under way.
struct Taken {
    target: Target,
    attempts: u32,
    login: Prefetch,
}

/// What the workers of one queue share.
pub(crate) struct Queue<'a> {
    fleet: &'a Arc<Fleet>,
    grants: &'a Grants,
    opts: &'a RunOptions,
    on_done: &'a (dyn Fn(&SchemaReport) + Sync),
    pending: Mutex<VecDeque<Queued>>,
    /// When each schema was first found locked by another runner.
    busy_since: Mutex<HashMap<SchemaName, Instant>>,
    reports: Mutex<Vec<SchemaReport>>,
    /// How long a schema may stay locked by another runner before this run gives up on it.
    lock_wait: Duration,
    workers: usize,
    /// Schemas of this queue that ended in a problem (drawn on the failure budget).
    failures: std::sync::atomic::AtomicUsize,
}

/// One worker's running state.
struct Worker<'q, 'a> {
    queue: &'q Queue<'a>,
    /// The worker's operator connection: locks, ledger reads, grants.
    op: Client,
    /// Schemas taken ahead, their role logins under way.
    ahead: VecDeque<Taken>,
    /// The lock of the schema just done: its release travels with the next request on the
    /// operator connection rather than costing a round trip of its own.
    locked: Option<SchemaName>,
    /// The lock and ledger of `ahead.front()`, read while the current schema ran: it belongs
    /// to the schema the worker takes next (nothing reorders `ahead` in between).
    prelocked: Option<LockResult>,
}

impl<'a> Queue<'a> {
    /// A queue of `targets` for `opts.jobs` workers (fewer if there are fewer schemas).
    pub(crate) fn new(
        fleet: &'a Arc<Fleet>,
        targets: Vec<Target>,
        grants: &'a Grants,
        opts: &'a RunOptions,
        on_done: &'a (dyn Fn(&SchemaReport) + Sync),
    ) -> Self {
        let workers = opts.jobs.max(1).min(targets.len().max(1));
        Queue {
            fleet,
            grants,
            opts,
            on_done,
            pending: Mutex::new(
                targets
                    .into_iter()
                    .map(|target| Queued {
                        target,
                        attempts: 0,
                    })
                    .collect(),
            ),
            busy_since: Mutex::new(HashMap::new()),
            reports: Mutex::new(Vec::new()),
            // That runner's steps are bounded by the same limit, and it may hold the lock
            // through the schema before (taken ahead) as well as this one's steps.
            lock_wait: fleet.runtime.limits().step_timeout * 4,
            workers,
            failures: std::sync::atomic::AtomicUsize::new(opts.failed_before),
        }
    }

    /// Whether more schemas failed than the run's failure budget allows.
    fn over_budget(&self) -> Option<usize> {
        let max = self.opts.max_failures?;
        (self.failures.load(std::sync::atomic::Ordering::Relaxed) > max).then_some(max)
    }

    /// Runs the workers until the queue is empty (or a signal stops them); every schema of
    /// the queue ends up in exactly one report.
    pub(crate) async fn drain(self) -> Vec<SchemaReport> {
        if self.len() == 0 {
            // No worker, no connection.
            return Vec::new();
        }
        // Workers share borrowed state, so they run concurrently on this task rather than as
        // spawned tasks; their I/O interleaves at every await.
        let workers: Vec<_> = (0..self.workers).map(|_| self.work()).collect();
        futures_util::future::join_all(workers).await;
        self.reports.into_inner().unwrap_or_default()
    }

    async fn work(&self) {
        match self.fleet.target.connect().await {
            Ok(op) => {
                Worker {
                    queue: self,
                    op,
                    ahead: VecDeque::new(),
                    locked: None,
                    prelocked: None,
                }
                .run()
                .await
            }
            Err(e) => {
                // Without a connection this worker can do nothing; report what it would have
                // taken so that no schema silently disappears from the summary.
                let message = e.to_string();
                while let Some(q) = self.pop() {
                    let outcome = Outcome::Error {
                        message: message.clone(),
                    };
                    self.done(q.target, outcome, Instant::now());
                }
            }
        }
    }

    fn pop(&self) -> Option<Queued> {
        self.pending.lock().ok().and_then(|mut q| q.pop_front())
    }

    fn len(&self) -> usize {
        self.pending.lock().map_or(0, |q| q.len())
    }

    fn done(&self, t: Target, outcome: Outcome, started: Instant) {
        if outcome.is_failure() {
            self.failures
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        let mut r = report(t, outcome, started);
        r.retries = self.fleet.take_retries(&r.schema);
        (self.on_done)(&r);
        if let Ok(mut v) = self.reports.lock() {
            v.push(r);
        }
    }
}

impl Worker<'_, '_> {
    async fn run(mut self) {
        loop {
            if let Some(sig) = crate::interrupt::received() {
                self.stop(&|| interrupted(Vec::new(), sig)).await;
                return;
            }
            if let Some(max) = self.queue.over_budget() {
                let reason = super::over_budget(max);
                self.stop(&|| Outcome::Skipped {
                    reason: reason.clone(),
                })
                .await;
                return;
            }
            let Some(taken) = self.take() else { break };
            let started = Instant::now();
            if self.op.is_closed() && !self.reconnect(&taken, started).await {
                continue;
            }
            let ledger = match self.prelocked.take() {
                Some(r) => r,
                None => {
                    let (_, r) = tokio::join!(
                        release(&self.op, self.locked.take()),
                        control::try_lock_and_read(
                            &self.op,
                            &taken.target.schema,
                            &self.fleet().secret
                        )
                    );
                    r
                }
            };
            match ledger {
                Ok(Some(ledger)) => self.migrate(taken, ledger, started).await,
                Ok(None) => self.busy(taken, started).await,
                Err(e) => self.lock_failed(taken, e, started).await,
            }
        }
        // The loop ends only with `ahead` empty, so nothing was locked ahead.
        release(&self.op, self.locked.take()).await;
    }

    fn fleet(&self) -> &Arc<Fleet> {
        self.queue.fleet
    }

    /// The next schema: the first one taken ahead, else the queue's. Also takes more ahead,
    /// but only from a queue long enough that every other worker still finds work (schemas
    /// taken ahead are not available to the others).
    fn take(&mut self) -> Option<Taken> {
        let taken = self
            .ahead
            .pop_front()
            .or_else(|| self.queue.pop().map(|q| self.login(q)))?;
        while self.ahead.len() < LOGINS_AHEAD && self.queue.len() > self.queue.workers {
            let Some(q) = self.queue.pop() else { break };
            let next = self.login(q);
            self.ahead.push_back(next);
        }
        Some(taken)
    }

    fn login(&self, q: Queued) -> Taken {
        Taken {
            login: self.fleet().prefetch_login(&q.target),
            target: q.target,
            attempts: q.attempts,
        }
    }

    /// The server restarted or dropped the operator connection: the schema in flight was
    /// reported failed, and session locks went with the session. Reconnects (the server may
    /// still be starting); `false` when that failed and `taken` was reported.
    async fn reconnect(&mut self, taken: &Taken, started: Instant) -> bool {
        self.locked = None;
        self.prelocked = None;
        let began = Instant::now();
        let mut delay = Duration::from_millis(200);
        let message = loop {
            match self.fleet().target.connect().await {
                Ok(c) => {
                    self.op = c;
                    return true;
                }
                Err(e) if began.elapsed() > Duration::from_secs(30) => {
                    break format!("lost the connection and could not reconnect: {e}");
                }
                Err(_) => {
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
            }
        };
        taken.login.abort();
        self.queue
            .done(taken.target.clone(), Outcome::Error { message }, started);
        false
    }

    /// The schema is locked and its ledger read: it runs, while the operator connection
    /// releases the previous schema and locks and reads the next one.
    async fn migrate(&mut self, taken: Taken, ledger: Vec<LedgerEntry>, started: Instant) {
        let fleet = self.queue.fleet;
        let t = taken.target;
        let issued = self
            .queue
            .grants
            .get(&t.schema)
            .map_or(&[][..], Vec::as_slice);
        let next = self.ahead.front().map(|n| n.target.schema.clone());
        let op = &self.op;
        let (outcome, (), next_lock) = tokio::join!(
            fleet.migrate_locked(op, &t, ledger, issued, taken.login, self.queue.opts),
            release(op, self.locked.take()),
            async {
                match &next {
                    Some(n) => Some(control::try_lock_and_read(op, n, &fleet.secret).await),
                    None => None,
                }
            }
        );
        self.prelocked = next_lock;
        self.locked = Some(t.schema.clone());
        self.queue.done(t, outcome, started);
    }

    /// Another runner is on the schema: go on with others and come back later (never block
    /// on the lock, which would serialise the fleet), up to the queue's lock wait.
    async fn busy(&mut self, taken: Taken, started: Instant) {
        taken.login.abort();
        release(&self.op, self.locked.take()).await;
        let t = taken.target;
        let since = self
            .queue
            .busy_since
            .lock()
            .map(|mut m| *m.entry(t.schema.clone()).or_insert(started))
            .unwrap_or(started);
        let wait = self.queue.lock_wait;
        if since.elapsed() > wait {
            let message = format!(
                "schema `{}` stayed locked by another wasmig run for more than {}s; skipped",
                t.schema,
                wait.as_secs()
            );
            self.queue.done(t, Outcome::Error { message }, since);
            return;
        }
        if taken.attempts > 0 {
            let backoff = 10u64 << taken.attempts.min(5);
            tokio::time::sleep(Duration::from_millis(backoff)).await;
        }
        if let Ok(mut q) = self.queue.pending.lock() {
            q.push_back(Queued {
                target: t,
                attempts: taken.attempts + 1,
            });
        }
    }

    /// Taking the lock or reading the ledger failed.
    async fn lock_failed(&mut self, taken: Taken, e: control::ControlError, started: Instant) {
        taken.login.abort();
        release(&self.op, self.locked.take()).await;
        // The statement may have failed after taking the lock (a session lock outlives the
        // failed statement): let it go rather than hold the schema until this worker's
        // connection closes. Unlocking a lock not held only draws a server warning; a closed
        // connection took its locks with it.
        if !self.op.is_closed() {
            release(&self.op, Some(taken.target.schema.clone())).await;
        }
        let outcome = Outcome::Error {
            message: e.to_string(),
        };
        self.queue.done(taken.target, outcome, started);
    }

    /// A signal arrived, or the failure budget is spent: start nothing more. What this worker
    /// took ahead and what is still queued is reported as `not_done`, so no schema goes
    /// missing from the summary.
    async fn stop(mut self, not_done: &dyn Fn() -> Outcome) {
        if let (Some(Ok(Some(_))), Some(next)) = (&self.prelocked, self.ahead.front()) {
            // Locked ahead for the schema that now will not run.
            release(&self.op, Some(next.target.schema.clone())).await;
        }
        self.prelocked = None;
        let mut left: Vec<Target> = Vec::new();
        for taken in self.ahead.drain(..) {
            taken.login.abort();
            left.push(taken.target);
        }
        while let Some(q) = self.queue.pop() {
            left.push(q.target);
        }
        for t in left {
            self.queue.done(t, not_done(), Instant::now());
        }
        release(&self.op, self.locked.take()).await;
    }
}

/// Releases a schema's lock, if there is one to release; a failure is only logged (the lock
/// goes with the session at the latest).
async fn release(op: &Client, schema: Option<SchemaName>) {
    if let Some(s) = schema
        && let Err(e) = control::release_schema(op, &s).await
    {
        tracing::warn!("{e}");
    }
}
