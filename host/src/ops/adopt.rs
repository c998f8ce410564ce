//! `wasmig tenant adopt`: take over schemas another tool created (django-tenants and the like),
//! each in one transaction, `--jobs` at a time; a schema that cannot be taken over is refused
//! alone, with the objects at fault named, and the others go on.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context as _, Result, bail};
use futures_util::future::join_all;
use tokio_postgres::Client;

use super::Settings;
use crate::Exit;
use crate::control::{self, AdoptMode, Adopted, EnsureSchema, SchemaObject};
use crate::labels::Labels;
use crate::names::SchemaName;
use crate::plan::Scope;

/// One schema to adopt, with its registry details.
#[derive(Debug, Clone)]
pub struct AdoptTarget {
    /// The schema.
    pub schema: SchemaName,
    /// Display name.
    pub name: Option<String>,
    /// Domain.
    pub domain: Option<String>,
}

/// Which schemas `tenant adopt` takes over.
#[derive(Debug, Clone)]
pub enum AdoptSource {
    /// These tenants, named on the command line.
    Schemas(Vec<AdoptTarget>),
    /// The rows of an operator's query: `schema_name`, optional `name` and `domain` columns.
    Query(String),
    /// The shared schema (`--shared-schema`).
    Shared,
}

/// Options of `tenant adopt`.
#[derive(Debug, Clone)]
pub struct AdoptOptions {
    /// What to adopt.
    pub source: AdoptSource,
    /// Change nothing; say what would change.
    pub mode: AdoptMode,
    /// Labels added to each adopted tenant.
    pub labels: Labels,
}

/// Adopts every target, `s.jobs` schemas at a time (each on its own connection, in its own
/// transaction); exit 1 when one was refused. After a first SIGINT / SIGTERM no new schema is
/// started, the ones under way finish, and the command exits 130 / 143.
pub async fn adopt(s: &Settings, o: &AdoptOptions) -> Result<Exit> {
    let client = s.connect_initialised().await?;
    let (mut targets, scope) = match &o.source {
        AdoptSource::Schemas(t) => (t.clone(), Scope::Tenant),
        AdoptSource::Query(sql) => (targets_from_query(&client, s, sql).await?, Scope::Tenant),
        AdoptSource::Shared => (
            vec![AdoptTarget {
                schema: s.shared_schema.clone(),
                name: None,
                domain: None,
            }],
            Scope::Shared,
        ),
    };
    if targets.is_empty() {
        bail!("no schema to adopt: the query returned no rows");
    }
    // A schema named twice is adopted once (its twin would only find it locked).
    let mut seen = BTreeSet::new();
    targets.retain(|t| seen.insert(t.schema.clone()));
    let names: Vec<&str> = targets.iter().map(|t| t.schema.as_str()).collect();
    let inventory = control::inventory(&client, &names).await?;
    let mut clients = vec![client];
    for _ in 1..s.jobs.min(targets.len()) {
        clients.push(s.target.connect().await?);
    }
    let _clean_stop = crate::interrupt::CleanStop::begin();
    let progress = crate::report::Progress::new(targets.len(), !s.quiet);
    let queue = Queue {
        targets: &targets,
        next: AtomicUsize::new(0),
        refused: Mutex::new(BTreeSet::new()),
        done: AtomicUsize::new(0),
    };
    let work = Work {
        s,
        scope,
        mode: o.mode,
        progress: &progress,
        inventory: &inventory,
        labels: &o.labels,
    };
    let mut clients = join_all(clients.into_iter().map(|c| work.worker(c, &queue))).await;
    progress.finish();
    let not_reached = targets.len() - queue.done.load(Ordering::Relaxed);
    let mut refused = queue
        .refused
        .into_inner()
        .unwrap_or_else(|e| e.into_inner());
    if o.mode == AdoptMode::Apply {
        let client = clients.swap_remove(0);
        for left in leftovers(client, &work, &targets, &names).await? {
            let (schema, role, objects) = left;
            crate::report::notes::adoption_leftover(&schema, &role, &objects);
            refused.insert(schema);
        }
    }
    let refused = refused.len();
    crate::report::notes::adopt_summary(targets.len(), refused, not_reached, o.mode);
    if let Some(sig) = crate::interrupt::received() {
        return Ok(Exit::from_signal(sig));
    }
    Ok(if refused == 0 {
        Exit::Ok
    } else {
        Exit::Problems
    })
}

/// Checked, not assumed: what is still another role's in the adopted schemas, in one pass.
/// Objects created while the fleet was being adopted (a migration of the other tool still
/// running, say) are given away in a second pass over just those schemas, with a fresh
/// inventory; what is left after that is returned, to be reported.
async fn leftovers(
    client: Client,
    work: &Work<'_>,
    targets: &[AdoptTarget],
    names: &[&str],
) -> Result<Vec<(String, String, Vec<String>)>> {
    let left = control::adoption_leftovers(&client, names).await?;
    if left.is_empty() || crate::interrupt::received().is_some() {
        return Ok(left);
    }
    let again: Vec<&str> = left.iter().map(|(s, _, _)| s.as_str()).collect();
    let retake: Vec<AdoptTarget> = targets
        .iter()
        .filter(|t| again.contains(&t.schema.as_str()))
        .cloned()
        .collect();
    let inventory = control::inventory(&client, &again).await?;
    let queue = Queue {
        targets: &retake,
        next: AtomicUsize::new(0),
        refused: Mutex::new(BTreeSet::new()),
        done: AtomicUsize::new(0),
    };
    let second = Work {
        inventory: &inventory,
        ..*work
    };
    let client = second.worker(client, &queue).await;
    Ok(control::adoption_leftovers(&client, &again).await?)
}

/// The schemas to adopt, handed out one at a time to the workers.
struct Queue<'a> {
    targets: &'a [AdoptTarget],
    next: AtomicUsize,
    refused: Mutex<BTreeSet<String>>,
    done: AtomicUsize,
}

impl Queue<'_> {
    /// `schema` was refused (or failed).
    fn refused_one(&self, schema: &SchemaName) {
        let mut refused = self.refused.lock().unwrap_or_else(|e| e.into_inner());
        refused.insert(schema.to_string());
    }
}

/// What every worker of one `tenant adopt` shares.
struct Work<'a> {
    s: &'a Settings,
    scope: Scope,
    mode: AdoptMode,
    progress: &'a crate::report::Progress,
    inventory: &'a HashMap<String, Vec<SchemaObject>>,
    labels: &'a Labels,
}

impl Work<'_> {
    /// Adopts schemas from `queue` on `client` until it is empty or a signal stops the run;
    /// gives the connection back.
    async fn worker(&self, mut client: Client, queue: &Queue<'_>) -> Client {
        while crate::interrupt::received().is_none() {
            let Some(t) = queue
                .targets
                .get(queue.next.fetch_add(1, Ordering::Relaxed))
            else {
                break;
            };
            let opts = EnsureSchema {
                schema: &t.schema,
                scope: self.scope,
                name: t.name.as_deref(),
                domain: t.domain.as_deref(),
                dbname: self.s.target.dbname(),
                session: &self.s.limits.session,
                app_role: self.s.app_role.as_deref(),
                connection_limit: if self.scope == Scope::Shared { 8 } else { 4 },
                labels: self.labels,
            };
            let objects = self
                .inventory
                .get(t.schema.as_str())
                .map_or(&[][..], Vec::as_slice);
            match control::adopt_schema(&mut client, &opts, self.mode, objects).await {
                Ok(adopted) => {
                    if matches!(adopted, Adopted::Refused { .. }) {
                        queue.refused_one(&t.schema);
                    }
                    crate::report::notes::adopted(self.progress, &t.schema, &adopted);
                }
                Err(e) => {
                    queue.refused_one(&t.schema);
                    // Every error of `adopt_schema` names the schema.
                    self.progress.err(&format!("error: {e}"));
                }
            }
            queue.done.fetch_add(1, Ordering::Relaxed);
            self.progress.inc();
        }
        client
    }
}

/// The targets the operator's query names (columns by name: `schema_name`, and optionally
/// `name` and `domain`).
async fn targets_from_query(client: &Client, s: &Settings, sql: &str) -> Result<Vec<AdoptTarget>> {
    let rows = client
        .simple_query(sql)
        .await
        .map_err(crate::db::PgError::from)
        .context("running --from-query")?;
    let mut targets = Vec::new();
    let rows = rows.iter().filter_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(r) => Some(r),
        _ => None,
    });
    for (i, row) in rows.enumerate() {
        let col = |name: &str| {
            row.columns()
                .iter()
                .position(|c| c.name() == name)
                .and_then(|p| row.get(p))
                .map(str::to_owned)
        };
        if !row.columns().iter().any(|c| c.name() == "schema_name") {
            bail!(
                "--from-query returns no `schema_name` column (columns are read by name: schema_name, and optionally name and domain)"
            );
        }
        let raw = col("schema_name")
            .with_context(|| format!("--from-query row {}: `schema_name` is NULL", i + 1))?;
        let schema = super::tenant::tenant_name(s, &raw)
            .with_context(|| format!("--from-query row {}", i + 1))?;
        targets.push(AdoptTarget {
            schema,
            name: col("name"),
            domain: col("domain"),
        });
    }
    Ok(targets)
}
