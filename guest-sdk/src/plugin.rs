//! The plugin description ([`Plugin`], [`Step`]) and the glue that answers the host's
//! `manifest`, `apply` and `revert` calls from it.

use crate::bindings::exports::wasmig::plugin0_3_0::plugin as wit;
use crate::bindings::wasmig::plugin0_1_0::types::SqlError;
use crate::db::{Db, Error};

/// What a plugin changes: structure or data. Migrations run before seeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Schema changes.
    Migration,
    /// Reference or demo data, written idempotently.
    Seed,
}

/// Where a plugin runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
pub struct Step {
    id: &'static str,
    description: &'static str,
    transactional: bool,
    body: Body,
    revert: Revert,
}

impl Step {
    /// A step that runs a SQL script (usually `include_str!("../sql/0001_x.sql")`).
    pub fn sql(id: &'static str, description: &'static str, up: &'static str) -> Self {
        Step {
            id,
            description,
            transactional: true,
            body: Body::Sql { up },
            revert: Revert::None,
        }
    }

    /// A step that runs Rust code; prefer the [`code_step!`](crate::code_step) macro, which
    /// fills `source` in for you.
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
            body: Body::Code { source, run },
            revert: Revert::None,
        }
    }

    /// SQL that undoes this step (`wasmig revert`). Without it the step is irreversible.
    pub fn revert_sql(mut self, down: &'static str) -> Self {
        self.revert = Revert::Sql(down);
        self
    }

    /// Code that undoes this step.
    pub fn revert_code(mut self, down: CodeFn) -> Self {
        self.revert = Revert::Code(down);
        self
    }

    /// Runs the step outside a transaction (e.g. `CREATE INDEX CONCURRENTLY`). The host then
    /// records it after it succeeds; write such steps so that rerunning them is harmless.
    pub fn non_transactional(mut self) -> Self {
        self.transactional = false;
        self
    }

    /// The step id.
    pub fn id(&self) -> &'static str {
        self.id
    }

    /// The content fingerprint the host records: `sql:<blake3>` of the normalised SQL text,
    /// or `code:<blake3>` of the code's source tokens.
    pub fn fingerprint(&self) -> String {
        match &self.body {
            Body::Sql { up } => fingerprint("sql", up),
            Body::Code { source, .. } => fingerprint("code", source),
        }
    }
}

/// `kind:<blake3 hex>` of `content` with line endings and trailing whitespace normalised, so
/// that a checkout with CRLF line endings or a trailing newline is not drift.
pub fn fingerprint(kind: &str, content: &str) -> String {
    let mut hasher = blake3::Hasher::new();
    for line in content.trim().lines() {
        hasher.update(line.trim_end().as_bytes());
        hasher.update(b"\n");
    }
    format!("{kind}:{}", hasher.finalize().to_hex())
}

/// A plugin: name, kind, scope, requirements and ordered steps.
#[derive(Debug, Clone)]
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
    pub fn migration(name: &'static str) -> Self {
        Self::new(name, Kind::Migration)
    }

    /// A seed plugin (tenant scope unless [`Plugin::shared`] is called).
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
    pub fn version(mut self, version: &'static str) -> Self {
        self.version = version;
        self
    }

    /// Runs once in the shared schema instead of in every tenant.
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
    pub fn tier(&self) -> Tier {
        self.needs.unwrap_or(match (self.scope, self.kind) {
            (Scope::Shared, _) => Tier::Full,
            (Scope::Tenant, Kind::Migration) => Tier::Schema,
            (Scope::Tenant, Kind::Seed) => Tier::Data,
        })
    }

    /// Requires another plugin's steps to be applied first.
    pub fn requires(mut self, plugin: &'static str) -> Self {
        self.requires.push(plugin);
        self
    }

    /// Adds a SQL step.
    pub fn sql(self, id: &'static str, description: &'static str, up: &'static str) -> Self {
        self.step(Step::sql(id, description, up))
    }

    /// Adds any step (see [`Step`] and [`code_step!`](crate::code_step)).
    pub fn step(mut self, step: Step) -> Self {
        self.steps.push(step);
        self
    }

    /// The steps in order.
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
            .map(|s| wit::Step {
                id: s.id.to_owned(),
                description: s.description.to_owned(),
                fingerprint: s.fingerprint(),
                transactional: s.transactional,
                reversible: !matches!(s.revert, Revert::None),
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

    #[test]
    fn fingerprint_ignores_line_endings_and_trailing_space() {
        let a = fingerprint("sql", "CREATE TABLE t (id int);\nSELECT 1;\n");
        let b = fingerprint("sql", "CREATE TABLE t (id int);  \r\nSELECT 1;");
        assert_eq!(a, b);
        assert!(a.starts_with("sql:"));
    }

    #[test]
    fn fingerprint_changes_with_content() {
        assert_ne!(
            fingerprint("sql", "CREATE TABLE t (id int);"),
            fingerprint("sql", "CREATE TABLE t (id bigint);")
        );
        assert_ne!(fingerprint("sql", "x"), fingerprint("code", "x"));
    }
}
