//! The plugin description ([`Plugin`], [`Step`]) and the glue that answers the host's
//! `manifest`, `apply` and `revert` calls from it.

use crate::bindings::exports::wasmig::plugin0_3_0::plugin as wit;
use crate::bindings::wasmig::plugin0_1_0::types::SqlError;
use crate::db::{Db, Error};
use crate::fingerprint::fingerprint;

/// What a plugin changes: structure or data. Migrations run before seeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
///
/// ```
/// use wasmig_sdk::{Kind, Plugin};
/// let _ = (Plugin::migration("inventory"), Kind::Migration);
/// ```
pub enum Kind {
    /// Schema changes.
    Migration,
    /// Reference or demo data, written idempotently.
    Seed,
}

/// Where a plugin runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
///
/// ```
/// use wasmig_sdk::Plugin;
/// let shared = Plugin::migration("reference").shared(); // Scope::Shared
/// ```
pub enum Scope {
    /// Once, in the shared schema.
    Shared,
    /// In every tenant schema.
    Tenant,
}

/// What a plugin's steps may do in their schema. The operator grants a tier per plugin
/// (`wasmig --grant PLUGIN=TIER`, or `--trust PLUGIN` for `Full`) and PostgreSQL enforces it;
/// the host refuses a plugin before any of its steps runs when it needs more than it was
/// granted, and runs it with exactly the tier it declares, never more.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
///
/// ```
/// use wasmig_sdk::{Plugin, Tier};
/// assert_eq!(Plugin::seed("units").tier(), Tier::Data);
/// ```
pub enum Tier {
    /// Read and write rows of the schema's existing tables; create nothing (the default for
    /// seeds).
    Data,
    /// Create and change tables, indexes, sequences, views and types, with expressions limited
    /// to side-effect-free built-ins; nothing that runs code for whoever touches it later (no
    /// functions, triggers, rules, policies). The default for tenant migrations.
    Schema,
    /// Anything the schema's owner may do (the default for shared plugins, which the operator
    /// trusts by name).
    Full,
}

type CodeFn = fn(&Db) -> Result<(), Error>;

#[derive(Debug, Clone)]
enum Body {
    Sql { up: &'static str },
    Code { source: &'static str, run: CodeFn },
}

#[derive(Debug, Clone)]
enum Revert {
    None,
    Sql(&'static str),
    Code(CodeFn),
}

/// One step of a plugin: SQL text or Rust code, applied once per schema.
#[derive(Debug, Clone)]
///
/// ```
/// use wasmig_sdk::{Step, code_step};
/// let a = Step::sql("0001_item", "Create item", "CREATE TABLE item (id bigint PRIMARY KEY)");
/// let b = code_step!("0002_fill", "Fill item", |db| {
///     db.execute("INSERT INTO item VALUES (1) ON CONFLICT DO NOTHING", &[])?;
///     Ok(())
/// });
/// assert_ne!(a.fingerprint(), b.fingerprint());
/// ```
pub struct Step {
    id: &'static str,
    description: &'static str,
    transactional: bool,
    repeatable: bool,
    body: Body,
    revert: Revert,
    /// Values the fingerprint covers: name and `Debug` text.
    covers: Vec<(&'static str, String)>,
}

impl Step {
    /// A step that runs a SQL script (usually `include_str!("../sql/0001_x.sql")`).
    ///
    /// ```
    /// use wasmig_sdk::Step;
    /// let s = Step::sql("0001_item", "Create item", "CREATE TABLE item (id bigint PRIMARY KEY);");
    /// assert!(s.fingerprint().starts_with("sql:"));
    /// ```
    pub fn sql(id: &'static str, description: &'static str, up: &'static str) -> Self {
        Step {
            id,
            description,
            transactional: true,
            repeatable: false,
            body: Body::Sql { up },
            revert: Revert::None,
            covers: Vec::new(),
        }
    }

    /// A step that runs Rust code; prefer the [`code_step!`](crate::code_step) macro, which
    /// fills `source` in for you.
    ///
    /// ```
    /// use wasmig_sdk::{Db, Error, Step};
    /// fn fill(db: &Db) -> Result<(), Error> {
    ///     db.execute("INSERT INTO item VALUES (1) ON CONFLICT DO NOTHING", &[]).map(|_| ())
    /// }
    /// // `code_step!` writes the source for you; by hand it is any text that changes with the code.
    /// let s = Step::code("0002_fill", "Fill item", "fill v1", fill);
    /// assert!(s.fingerprint().starts_with("code:"));
    /// ```
    pub fn code(
        id: &'static str,
        description: &'static str,
        source: &'static str,
        run: CodeFn,
    ) -> Self {
        Step {
            id,
            description,
            transactional: true,
            repeatable: false,
            body: Body::Code { source, run },
            revert: Revert::None,
            covers: Vec::new(),
        }
    }

    /// SQL that undoes this step (`wasmig revert`). Without it the step is irreversible.
    ///
    /// ```
    /// use wasmig_sdk::Step;
    /// let s = Step::sql("0003_sku", "Item SKU", "ALTER TABLE item ADD COLUMN sku text")
    ///     .revert_sql("ALTER TABLE item DROP COLUMN sku");
    /// ```
    pub fn revert_sql(mut self, down: &'static str) -> Self {
        self.revert = Revert::Sql(down);
        self
    }

    /// Code that undoes this step.
    ///
    /// ```
    /// use wasmig_sdk::{Step, code_step};
    /// let s = code_step!("0004_fill", "Fill", |db| db.batch("INSERT INTO item VALUES (2)"))
    ///     .revert_code(|db| db.batch("DELETE FROM item WHERE id = 2"));
    /// ```
    pub fn revert_code(mut self, down: CodeFn) -> Self {
        self.revert = Revert::Code(down);
        self
    }

    /// Runs the step outside a transaction (e.g. `CREATE INDEX CONCURRENTLY`). The host then
    /// records it after it succeeds; write such steps so that rerunning them is harmless.
    ///
    /// ```
    /// use wasmig_sdk::Step;
    /// let s = Step::sql(
    ///     "0005_item_sku_idx",
    ///     "Index SKUs without locking writers",
    ///     "CREATE INDEX CONCURRENTLY IF NOT EXISTS item_sku_idx ON item (sku)",
    /// )
    /// .non_transactional();
    /// ```
    pub fn non_transactional(mut self) -> Self {
        self.transactional = false;
        self
    }

    /// Seed steps only: when the step's content (its fingerprint) changes after it was
    /// applied, `migrate` runs it again, in its own transaction, and records the new
    /// fingerprint, instead of refusing the change as drift. `status` shows it as "changed,
    /// will re-run". Write it so that running it again is right (an upsert, not an insert).
    ///
    /// ```
    /// use wasmig_sdk::{Step, code_step};
    ///
    /// const UNITS: [&str; 3] = ["kg", "g", "lb"];
    /// let step = code_step!("0001_units", "Units of measure", |db| {
    ///     for u in UNITS {
    ///         db.execute("INSERT INTO unit (code) VALUES ($1) ON CONFLICT DO NOTHING", &[&u])?;
    ///     }
    ///     Ok(())
    /// })
    /// .covers("UNITS", &UNITS)
    /// .repeatable();
    /// assert!(step.is_repeatable());
    /// ```
    pub fn repeatable(mut self) -> Self {
        self.repeatable = true;
        self
    }

    /// Makes `value` part of the step's fingerprint, by its `Debug` text: declare the data
    /// (and, by a version constant, the helpers) a code step is built from, so that changing
    /// them is a change of the step: drift, or for a [repeatable](Step::repeatable) seed, a
    /// re-run. Use ordered collections (arrays, `Vec`, `BTreeMap`), not `HashMap`, whose
    /// `Debug` order changes from run to run.
    ///
    /// ```
    /// use wasmig_sdk::{Step, code_step};
    ///
    /// const UNITS: [&str; 2] = ["kg", "g"];
    /// let a = code_step!("0001_units", "Units", |_db| Ok(())).covers("UNITS", &UNITS);
    /// let b = code_step!("0001_units", "Units", |_db| Ok(())).covers("UNITS", &["kg", "g", "lb"]);
    /// assert_ne!(a.fingerprint(), b.fingerprint());
    /// ```
    pub fn covers(mut self, name: &'static str, value: &dyn std::fmt::Debug) -> Self {
        self.covers.push((name, format!("{value:?}")));
        self
    }

    /// The step id.
    ///
    /// ```
    /// assert_eq!(wasmig_sdk::Step::sql("0001_a", "A", "SELECT 1").id(), "0001_a");
    /// ```
    pub fn id(&self) -> &'static str {
        self.id
    }

    /// Whether [`Step::repeatable`] was called.
    ///
    /// ```
    /// assert!(!wasmig_sdk::Step::sql("0001_a", "A", "SELECT 1").is_repeatable());
    /// ```
    pub fn is_repeatable(&self) -> bool {
        self.repeatable
    }

    /// The content fingerprint the host records (see the [`fingerprint`](crate::fingerprint)
    /// module for what it covers): `sql:<blake3>` of the normalised SQL text, or
    /// `code:<blake3>` of the code's source tokens, log text blanked, and the covered values.
    pub fn fingerprint(&self) -> String {
        self.fingerprints().0
    }

    /// The fingerprint, and the one an SDK before log-blanking gave the same content.
    fn fingerprints(&self) -> (String, Option<String>) {
        match &self.body {
            Body::Sql { up } if self.covers.is_empty() => (fingerprint("sql", up), None),
            Body::Sql { up } => (crate::fingerprint::sql_with_covers(up, &self.covers), None),
            Body::Code { source, .. } => crate::fingerprint::code(source, &self.covers),
        }
    }
}

/// A plugin: name, kind, scope, requirements and ordered steps.
#[derive(Debug, Clone)]
///
/// ```
/// use wasmig_sdk::{Plugin, sql_dir};
/// let p = Plugin::migration("carriers")
///     .version("1.0.0")
///     .steps_from(sql_dir!("../plugins/carriers/sql"));
/// assert_eq!(p.steps().len(), 3);
/// ```
pub struct Plugin {
    name: &'static str,
    version: &'static str,
    kind: Kind,
    scope: Scope,
    needs: Option<Tier>,
    requires: Vec<&'static str>,
    steps: Vec<Step>,
}

impl Plugin {
    /// A migration plugin (tenant scope unless [`Plugin::shared`] is called).
    ///
    /// ```
    /// let p = wasmig_sdk::Plugin::migration("inventory");
    /// ```
    pub fn migration(name: &'static str) -> Self {
        Self::new(name, Kind::Migration)
    }

    /// A seed plugin (tenant scope unless [`Plugin::shared`] is called).
    ///
    /// ```
    /// let p = wasmig_sdk::Plugin::seed("inventory-units").requires("inventory");
    /// ```
    pub fn seed(name: &'static str) -> Self {
        Self::new(name, Kind::Seed)
    }

    fn new(name: &'static str, kind: Kind) -> Self {
        Plugin {
            name,
            version: "0.0.0",
            kind,
            scope: Scope::Tenant,
            needs: None,
            requires: Vec::new(),
            steps: Vec::new(),
        }
    }

    /// The plugin's version, shown in `status` (e.g. `env!("CARGO_PKG_VERSION")`).
    ///
    /// ```
    /// let p = wasmig_sdk::Plugin::migration("inventory").version(env!("CARGO_PKG_VERSION"));
    /// ```
    pub fn version(mut self, version: &'static str) -> Self {
        self.version = version;
        self
    }

    /// Runs once in the shared schema instead of in every tenant.
    ///
    /// ```
    /// use wasmig_sdk::{Plugin, Tier};
    /// assert_eq!(Plugin::migration("reference").shared().tier(), Tier::Full);
    /// ```
    pub fn shared(mut self) -> Self {
        self.scope = Scope::Shared;
        self
    }

    /// Declares the capability tier the plugin's steps need, when it is not the default (seeds:
    /// [`Tier::Data`]; tenant migrations: [`Tier::Schema`]; shared plugins: [`Tier::Full`]).
    ///
    /// ```
    /// use wasmig_sdk::{Plugin, Tier};
    ///
    /// // A seed that creates its own lookup table needs `Schema`; the operator grants it
    /// // with `--grant lookup-seed=schema`.
    /// let p = Plugin::seed("lookup-seed").needs(Tier::Schema);
    /// assert_eq!(p.tier(), Tier::Schema);
    /// ```
    pub fn needs(mut self, tier: Tier) -> Self {
        self.needs = Some(tier);
        self
    }

    /// The tier the plugin declares: what [`Plugin::needs`] set, else its kind's and scope's
    /// default.
    ///
    /// ```
    /// use wasmig_sdk::{Plugin, Tier};
    /// assert_eq!(Plugin::migration("inventory").tier(), Tier::Schema);
    /// ```
    pub fn tier(&self) -> Tier {
        self.needs.unwrap_or(match (self.scope, self.kind) {
            (Scope::Shared, _) => Tier::Full,
            (Scope::Tenant, Kind::Migration) => Tier::Schema,
            (Scope::Tenant, Kind::Seed) => Tier::Data,
        })
    }

    /// Requires another plugin's steps to be applied first.
    ///
    /// ```
    /// let p = wasmig_sdk::Plugin::migration("orders").requires("customers");
    /// ```
    pub fn requires(mut self, plugin: &'static str) -> Self {
        self.requires.push(plugin);
        self
    }

    /// Adds a SQL step.
    ///
    /// ```
    /// let p = wasmig_sdk::Plugin::migration("inventory")
    ///     .sql("0001_item", "Create item", "CREATE TABLE item (id bigint PRIMARY KEY)");
    /// assert_eq!(p.steps().len(), 1);
    /// ```
    pub fn sql(self, id: &'static str, description: &'static str, up: &'static str) -> Self {
        self.step(Step::sql(id, description, up))
    }

    /// Adds steps in order, e.g. a folder of SQL files ([`sql_dir!`](crate::sql_dir)).
    ///
    /// ```
    /// use wasmig_sdk::{Plugin, Step};
    /// let p = Plugin::migration("inventory").steps_from([
    ///     Step::sql("0001_item", "Create item", "CREATE TABLE item (id bigint PRIMARY KEY)"),
    ///     Step::sql("0002_sku", "Item SKU", "ALTER TABLE item ADD COLUMN sku text"),
    /// ]);
    /// assert_eq!(p.steps()[1].id(), "0002_sku");
    /// ```
    pub fn steps_from(mut self, steps: impl IntoIterator<Item = Step>) -> Self {
        self.steps.extend(steps);
        self
    }

    /// Adds any step (see [`Step`] and [`code_step!`](crate::code_step)).
    ///
    /// ```
    /// use wasmig_sdk::{Plugin, code_step};
    /// let p = Plugin::seed("units").step(code_step!("0001_units", "Units", |db| {
    ///     db.upsert("unit", &[("code", &"kg")], &[("name", &"kilogram")])
    /// }));
    /// ```
    pub fn step(mut self, step: Step) -> Self {
        self.steps.push(step);
        self
    }

    /// The steps in order.
    ///
    /// ```
    /// let p = wasmig_sdk::Plugin::migration("inventory").sql("0001_a", "A", "SELECT 1");
    /// assert_eq!(p.steps()[0].id(), "0001_a");
    /// ```
    pub fn steps(&self) -> &[Step] {
        &self.steps
    }

    fn find(&self, id: &str) -> Result<&Step, wit::StepError> {
        self.steps
            .iter()
            .find(|s| s.id == id)
            .ok_or_else(|| wit::StepError::UnknownStep(id.to_owned()))
    }
}

#[doc(hidden)]
pub fn manifest(p: &Plugin) -> wit::PluginInfo {
    wit::PluginInfo {
        name: p.name.to_owned(),
        version: p.version.to_owned(),
        kind: match p.kind {
            Kind::Migration => wit::Kind::Migration,
            Kind::Seed => wit::Kind::Seed,
        },
        scope: match p.scope {
            Scope::Shared => wit::Scope::Shared,
            Scope::Tenant => wit::Scope::Tenant,
        },
        needs: match p.tier() {
            Tier::Data => wit::Tier::Data,
            Tier::Schema => wit::Tier::Schema,
            Tier::Full => wit::Tier::Full,
        },
        requires: p.requires.iter().map(|r| (*r).to_owned()).collect(),
        steps: p
            .steps
            .iter()
            .map(|s| {
                let (fingerprint, before) = s.fingerprints();
                wit::Step {
                    id: s.id.to_owned(),
                    description: s.description.to_owned(),
                    fingerprint,
                    transactional: s.transactional,
                    reversible: !matches!(s.revert, Revert::None),
                    repeatable: s.repeatable,
                    accepts: before.into_iter().collect(),
                    sql: match s.body {
                        Body::Sql { up } => Some(up.to_owned()),
                        Body::Code { .. } => None,
                    },
                }
            })
            .collect(),
    }
}

#[doc(hidden)]
pub fn apply(p: &Plugin, id: &str) -> Result<(), wit::StepError> {
    let db = Db::new();
    match &p.find(id)?.body {
        Body::Sql { up } => db.batch(up),
        Body::Code { run, .. } => run(&db),
    }
    .map_err(to_wit)
}

#[doc(hidden)]
pub fn revert(p: &Plugin, id: &str) -> Result<(), wit::StepError> {
    let db = Db::new();
    match &p.find(id)?.revert {
        Revert::None => Err(wit::StepError::Irreversible),
        Revert::Sql(down) => db.batch(down).map_err(to_wit),
        Revert::Code(down) => down(&db).map_err(to_wit),
    }
}

fn to_wit(e: Error) -> wit::StepError {
    match e {
        Error::Sql {
            sqlstate,
            message,
            detail,
            hint,
        } => wit::StepError::Sql(SqlError {
            sqlstate,
            message,
            detail,
            hint,
        }),
        Error::Message(m) => wit::StepError::Failed(m),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_declared_tier_defaults_by_kind_and_scope() {
        assert_eq!(Plugin::seed("s").tier(), Tier::Data);
        assert_eq!(Plugin::migration("m").tier(), Tier::Schema);
        assert_eq!(Plugin::migration("m").shared().tier(), Tier::Full);
        assert_eq!(Plugin::seed("s").shared().tier(), Tier::Full);
        assert_eq!(Plugin::seed("s").needs(Tier::Schema).tier(), Tier::Schema);
        assert_eq!(manifest(&Plugin::seed("s")).needs, wit::Tier::Data);
    }
}
