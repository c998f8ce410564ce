//! Command-line definitions (clap): doc comments here are the `--help` text. `settings`
//! turns the global options and the config file into validated settings, [`commands`] each
//! command into its operation's options. Nothing outside `cli/` sees clap.

pub mod commands;
mod settings;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// wasmig: migrate a shared PostgreSQL schema and every tenant schema with WebAssembly
/// migration plugins, each confined to its own schema by PostgreSQL itself.
#[derive(Debug, Parser)]
#[command(name = "wasmig", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// Global options.
    #[command(flatten)]
    pub global: Global,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// `--help` headings: the command's own options come first (under "Options"), then these.
const CONN: &str = "Connection";
const PLUG: &str = "Plugins";
const LIM: &str = "Limits";
const OUT: &str = "Output";

/// Options every command takes.
#[derive(Debug, Args)]
pub struct Global {
    /// PostgreSQL URL (postgres://user:password@host:port/db). Default: the config file, else
    /// DATABASE_URL, else the libpq variables PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE.
    #[arg(help_heading = CONN, long, global = true, value_name = "URL")]
    pub database_url: Option<String>,

    /// Config file with named environments (default: ./wasmig.toml when it exists).
    #[arg(help_heading = CONN, long, global = true, env = "WASMIG_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Environment of the config file to use (default: its `default_env`).
    #[arg(help_heading = CONN, long = "env", global = true, env = "WASMIG_ENV", value_name = "NAME")]
    pub env_name: Option<String>,

    /// Directory holding the plugin components (*.wasm), where `wasmig build` puts them
    /// [default: wasmig-plugins].
    #[arg(help_heading = PLUG, long, global = true, env = "WASMIG_PLUGINS", value_name = "DIR")]
    pub plugins: Option<PathBuf>,

    /// Name of the shared schema (shared-scope plugins run there) [default: shared].
    #[arg(help_heading = PLUG,
        long,
        global = true,
        env = "WASMIG_SHARED_SCHEMA",
        value_name = "SCHEMA"
    )]
    pub shared_schema: Option<String>,

    /// Schemas worked on in parallel by `migrate` and `tenant adopt`, each on its
    /// own connections.
    #[arg(help_heading = PLUG,
        long,
        short = 'j',
        global = true,
        env = "WASMIG_JOBS",
        value_name = "N"
    )]
    pub jobs: Option<usize>,

    /// Further attempts of a step that failed on a lock it could not get in time (55P03), a
    /// deadlock (40P01) or a serialization failure (40001), each its own transaction, after a
    /// jittered exponential pause [default: 3]. Steps that are not transactional are not
    /// retried.
    #[arg(help_heading = PLUG,
        long,
        global = true,
        env = "WASMIG_RETRIES",
        value_name = "N"
    )]
    pub retries: Option<u32>,

    /// Plugins trusted by name (repeatable, or comma-separated in WASMIG_TRUSTED), added to the
    /// config file's `trusted`: shared-scope plugins run only when trusted; a trusted tenant
    /// plugin gets `full` rights (it may create functions, triggers, policies: code that runs
    /// as whoever touches its tables).
    #[arg(help_heading = PLUG,
        long = "trust",
        global = true,
        env = "WASMIG_TRUSTED",
        value_delimiter = ',',
        value_name = "PLUGIN"
    )]
    pub trusted: Vec<String>,

    /// The plugins of --trust (or WASMIG_TRUSTED) are the only ones trusted: the config file's
    /// `trusted` is left out.
    #[arg(help_heading = PLUG, long, global = true)]
    pub trust_only: bool,

    /// What a tenant plugin may do, granted by name: `PLUGIN=data|schema|full` (repeatable,
    /// or comma-separated in WASMIG_GRANTS). Without a grant a seed gets `data` (rows only)
    /// and a migration `schema` (no code); `--trust PLUGIN` grants `full`.
    #[arg(help_heading = PLUG,
        long = "grant",
        global = true,
        env = "WASMIG_GRANTS",
        value_delimiter = ',',
        value_name = "PLUGIN=TIER"
    )]
    pub grants: Vec<String>,

    /// Lock file pinning plugin artifacts by blake3, used when it exists [default: wasmig.lock].
    #[arg(help_heading = PLUG, long, global = true, env = "WASMIG_LOCK_FILE", value_name = "FILE")]
    pub lock_file: Option<PathBuf>,

    /// Refuse any plugin that the lock file does not pin.
    #[arg(help_heading = PLUG, long, global = true)]
    pub locked: bool,

    /// Role that gets data privileges (SELECT, INSERT, UPDATE, DELETE, sequences, functions)
    /// on everything plugins create, so the application keeps working.
    #[arg(help_heading = PLUG, long, global = true, env = "WASMIG_APP_ROLE", value_name = "ROLE")]
    pub app_role: Option<String>,

    /// Wall-clock limit of one plugin step (e.g. 30s, 15m).
    #[arg(help_heading = LIM,
        long,
        global = true,
        env = "WASMIG_STEP_TIMEOUT",
        value_name = "DURATION"
    )]
    pub step_timeout: Option<String>,

    /// Linear-memory limit of one plugin instance, in MiB.
    #[arg(help_heading = LIM,
        long,
        global = true,
        env = "WASMIG_MEMORY_LIMIT_MB",
        value_name = "MIB"
    )]
    pub memory_limit_mb: Option<u64>,

    /// `lock_timeout` of plugin sessions (e.g. 30s).
    #[arg(help_heading = LIM,
        long,
        global = true,
        env = "WASMIG_LOCK_TIMEOUT",
        value_name = "DURATION"
    )]
    pub lock_timeout: Option<String>,

    /// Per-plugin limit, PLUGIN:KEY=VALUE (repeatable); KEY is one of the limit keys.
    #[arg(
        help_heading = LIM,
        long = "plugin-limit",
        global = true,
        value_name = "PLUGIN:KEY=VALUE",
        help = format!(
            "Per-plugin limit, PLUGIN:KEY=VALUE with KEY one of {} (repeatable)",
            crate::config::limit_key_names()
        )
    )]
    pub limits: Vec<String>,

    /// Print more (plugin debug logs, per-step timings). Repeat for more.
    #[arg(help_heading = OUT, long, short = 'v', global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Print only errors and the final summary.
    #[arg(help_heading = OUT, long, short = 'q', global = true)]
    pub quiet: bool,

    /// Which list options came from environment variables rather than the command line
    /// (filled in from the parsed matches by [`Cli::parse_args`]).
    #[arg(skip)]
    pub from_env: FromEnv,
}

/// List options whose values came from an environment variable: such a variable is often set
/// once for many runs with different plugins, so a name in it that matches no loaded plugin
/// is a warning, while the same name on the command line is an error.
#[derive(Debug, Clone, Copy, Default)]
pub struct FromEnv {
    /// `WASMIG_TRUSTED` gave `--trust`.
    pub trusted: bool,
    /// `WASMIG_GRANTS` gave `--grant`.
    pub grants: bool,
}

impl Cli {
    /// Parses the process's arguments (exiting with clap's message on bad usage), noting
    /// which list options came from environment variables.
    pub fn parse_args() -> Cli {
        use clap::{CommandFactory as _, FromArgMatches as _};
        let matches = Cli::command().get_matches();
        let mut cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
        // Global options are propagated to the subcommand's matches; look at the deepest.
        let mut m = &matches;
        while let Some((_, sub)) = m.subcommand() {
            m = sub;
        }
        let env = |id: &str| {
            matches!(
                m.value_source(id),
                Some(clap::parser::ValueSource::EnvVariable)
            )
        };
        cli.global.from_env = FromEnv {
            trusted: env("trusted"),
            grants: env("grants"),
        };
        cli
    }
}

impl Command {
    /// Whether the command was asked for a JSON document on stdout (so that a failure is
    /// one too).
    pub fn wants_json(&self) -> bool {
        match self {
            Command::Migrate(a) => a.json,
            Command::Status(a) => a.json,
            Command::Verify(a) => a.json,
            Command::Tenant(TenantCommand::List { json }) => *json,
            Command::Health { json } | Command::History { json, .. } => *json,
            Command::Metrics { format, output, .. } => {
                *format == MetricsFormat::Json && output.is_none()
            }
            Command::Report { json, .. } => *json,
            _ => false,
        }
    }
}

/// `wasmig init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// Give every tenant an application role of its own (recommended): the application's data
    /// rights on that tenant's schema alone, which the application role (`--app-role`) may
    /// `SET ROLE` to when it switches tenant (`SELECT wasmig_api.use_tenant('acme')`), so that
    /// whatever a tenant planted runs with that tenant's rights only. Kept for the database:
    /// tenants created or adopted later get theirs too.
    #[arg(long)]
    pub tenant_app_roles: bool,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create (or upgrade) the control schema `wasmig` and the shared schema. Idempotent.
    Init(InitArgs),
    /// Create, list or drop tenants.
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// Apply pending steps: the shared schema, then every tenant; migrations, then seeds.
    Migrate(MigrateArgs),
    /// Show, per schema, applied, pending and drifted steps.
    Status(StatusArgs),
    /// Check tenants for pending, drifted, failed and unknown steps; exit 0 when all is
    /// applied, 1 when something is pending or drifted, 2 on error.
    Verify(VerifyArgs),
    /// Restore one schema and its ledger rows from a dump made by `migrate --backup-dir`.
    Restore {
        /// The `.dump` file (its `.ledger.json` must sit beside it).
        file: PathBuf,
        /// Schema to restore.
        #[arg(long)]
        schema: String,
        /// Hold the schema where the dump puts it, with this reason, so that `migrate` and
        /// `verify --fix` do not apply again what the restore took away (`wasmig release`
        /// ends it).
        #[arg(long, value_name = "REASON")]
        hold: Option<String>,
        /// Confirm: the schema's current data is replaced by the dump's.
        #[arg(long)]
        yes: bool,
    },
    /// Undo applied steps, newest first, each removing its ledger row in the same
    /// transaction: a plugin's steps (`--plugin P [--to STEP]`) in the schemas picked, or
    /// exactly the steps run N applied (`--run N`) in every schema it touched. Everything is
    /// checked first: an irreversible or since-changed step refuses the whole revert.
    Revert {
        /// Which schemas.
        #[command(flatten)]
        pick: PickArgs,
        /// Plugin whose steps to revert.
        #[arg(long, required_unless_present = "run", conflicts_with = "run")]
        plugin: Option<String>,
        /// Keep this step (and those before it) applied; default: revert every step.
        #[arg(long, value_name = "STEP", requires = "plugin")]
        to: Option<String>,
        /// Revert the steps run N applied (see `wasmig history`), across plugins in reverse
        /// dependency order; --schema/--all-tenants/--where narrow it.
        #[arg(long, value_name = "N")]
        run: Option<i64>,
        /// Hold what was reverted, with this reason (with --plugin, that plugin in each
        /// schema; with --run, each schema), so that `migrate` and `verify --fix` do not apply
        /// it again (`wasmig release` ends it).
        #[arg(long, value_name = "REASON")]
        hold: Option<String>,
        /// Confirm: revert steps may drop tables and the data in them.
        #[arg(long)]
        yes: bool,
    },
    /// Record steps as applied without running them, in one schema or many: a plugin's steps
    /// through STEP (`--plugin P --to STEP`), or in each schema the steps its own
    /// `django_migrations` lists (`--from-django`), for schemas another tool migrated.
    #[command(group(clap::ArgGroup::new("picked").required(true).multiple(true).args(["schemas", "all_tenants", "pick_where"])))]
    Baseline {
        /// Which schemas.
        #[command(flatten)]
        pick: PickArgs,
        /// Plugin whose steps to record (with --to).
        #[arg(
            long,
            required_unless_present = "from_django",
            conflicts_with = "from_django"
        )]
        plugin: Option<String>,
        /// The last step to record (with --plugin).
        #[arg(long, value_name = "STEP", requires = "plugin")]
        to: Option<String>,
        /// Record what each schema's own `django_migrations` says was applied: step ids are
        /// Django migration names, plugin names its app labels (see --map).
        #[arg(long)]
        from_django: bool,
        /// A Django app label whose plugin has another name: APP=PLUGIN (repeatable).
        #[arg(long = "map", value_name = "APP=PLUGIN", requires = "from_django")]
        maps: Vec<String>,
        /// Confirm a baseline of more than one schema.
        #[arg(long)]
        yes: bool,
    },
    /// After a person reviewed a drift: record the step's current checksum, in the schemas
    /// picked (old -> new per schema).
    #[command(group(clap::ArgGroup::new("picked").required(true).multiple(true).args(["schemas", "all_tenants", "pick_where"])))]
    Repair {
        /// Which schemas.
        #[command(flatten)]
        pick: PickArgs,
        /// Plugin.
        #[arg(long)]
        plugin: String,
        /// Step id.
        #[arg(long)]
        step: String,
        /// Confirm a repair of more than one schema.
        #[arg(long)]
        yes: bool,
    },
    /// Mark failed steps resolved, once a person dealt with them (a step removed or fixed by
    /// hand, a failure that no longer matters): they stop counting in `verify`, `health` and
    /// `metrics`, and the resolution is recorded (`wasmig history`). A failure also resolves on
    /// its own when the schema later applies that step, or its plugin no longer declares it.
    #[command(group(clap::ArgGroup::new("resolve_picked").required(true).multiple(true).args(["schemas", "all_tenants", "pick_where"])))]
    Resolve {
        /// Which schemas.
        #[command(flatten)]
        pick: PickArgs,
        /// Only this plugin's failures.
        #[arg(long)]
        plugin: Option<String>,
        /// Only this step's failures.
        #[arg(long, requires = "plugin")]
        step: Option<String>,
        /// Why (kept with each failure resolved).
        #[arg(long)]
        reason: String,
        /// Confirm resolving failures in more than one schema.
        #[arg(long)]
        yes: bool,
    },
    /// Keep schemas where they are, with a reason, until released: `migrate` and `verify
    /// --fix` apply nothing the hold covers (a plugin that requires a held plugin waits too),
    /// and `status`, `verify`, `health` and `metrics` show the hold. `--plugin P` holds only
    /// that plugin's steps. Recorded as a run (`wasmig history`).
    #[command(group(clap::ArgGroup::new("hold_picked").required(true).multiple(true).args(["schemas", "all_tenants", "pick_where"])))]
    Hold {
        /// Which schemas.
        #[command(flatten)]
        pick: PickArgs,
        /// Only this plugin's steps [default: the whole schema].
        #[arg(long)]
        plugin: Option<String>,
        /// Why (shown wherever the hold is).
        #[arg(long)]
        reason: String,
        /// Confirm holding more than one schema.
        #[arg(long)]
        yes: bool,
    },
    /// Release holds set by `wasmig hold` (with `--plugin P`, only the hold on that plugin).
    #[command(group(clap::ArgGroup::new("release_picked").required(true).multiple(true).args(["schemas", "all_tenants", "pick_where"])))]
    Release {
        /// Which schemas.
        #[command(flatten)]
        pick: PickArgs,
        /// Only the hold on this plugin [default: every hold of the schema].
        #[arg(long)]
        plugin: Option<String>,
        /// Confirm releasing more than one schema.
        #[arg(long)]
        yes: bool,
    },
    /// Show what changed in applied steps (drift, or a repeatable seed that will re-run): a
    /// unified diff of the SQL it was applied with against what the loaded plugin says now,
    /// once per change with the schemas that have it. Exit 0 nothing changed, 1 changes.
    Diff {
        /// Only this schema (repeatable) [default: every managed schema].
        #[arg(long = "schema", value_name = "SCHEMA")]
        schemas: Vec<String>,
        /// Only this plugin.
        #[arg(long)]
        plugin: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Create a plugin crate that builds out of the box: Cargo.toml with the SDK and the
    /// small-artifact release profile, a first SQL step in `sql/`, a README. No database.
    New {
        /// Plugin name (lowercase letters, digits, `-` and `_`): the crate's and the manifest's.
        name: String,
        /// A seed plugin (rows), not a migration.
        #[arg(long)]
        seed: bool,
        /// Runs once in the shared schema, not in every tenant.
        #[arg(long)]
        shared: bool,
        /// Where to create the crate's folder.
        #[arg(long, default_value = ".", value_name = "DIR")]
        dir: PathBuf,
        /// The `guest-sdk` folder to depend on [default: the one of the checkout this wasmig
        /// was built from].
        #[arg(long, value_name = "PATH")]
        sdk: Option<PathBuf>,
    },
    /// Build plugin crates for wasm32-wasip2 and copy each component into the plugins
    /// directory as `<plugin name>.wasm`. No database.
    Build {
        /// Plugin crate folders [default: the current folder].
        #[arg(value_name = "CRATE_DIR")]
        crates: Vec<PathBuf>,
        /// Where the components go [default: the plugins directory].
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
    /// Look at plugin components without a database.
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// Wait until the database accepts connections (backoff), or fail with the last error.
    Wait {
        /// How long to wait (e.g. 60s, 5m).
        #[arg(long, default_value = "60s", value_name = "DURATION")]
        timeout: String,
    },
    /// Database reachability and latency, versions, pending/drifted/failed counts, locks, last
    /// run. Exit 0 healthy, 1 needs attention, 2 unreachable.
    Health {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Serve the fleet over HTTP until SIGINT or SIGTERM: `/metrics` (Prometheus), `/livez`
    /// and `/readyz` (probes), `/api/status`, `/api/history`, `/api/runs/N` (the `--json`
    /// documents) and a dashboard at `/`. Read-only unless `--heal-every` is given.
    Serve {
        /// Where to listen. Anything but loopback exposes tenant names to whoever can reach
        /// it: put it behind a proxy that authenticates.
        #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:9187")]
        listen: std::net::SocketAddr,
        /// Run `verify --fix` this often (e.g. `15m`), as runs of its own (`history`), under
        /// the same locks as any run; plugins are read afresh each time [default: never write].
        #[arg(long, value_name = "DURATION")]
        heal_every: Option<String>,
        /// How long one read of the fleet answers requests (a scrape every 15 s costs one
        /// read per interval whatever the fleet's size).
        #[arg(long, value_name = "DURATION", default_value = "5s")]
        cache_for: String,
        /// Backups before a heal applies steps.
        #[command(flatten)]
        backup: BackupArgs,
        /// POST a JSON summary here when a heal run fails or is interrupted [config: notify].
        #[arg(long, value_name = "URL")]
        notify: Option<String>,
        /// Answer requests for this host name too (repeatable). On loopback only the loopback
        /// names are answered (a web page cannot rebind its name to this server); elsewhere,
        /// any name unless this is given.
        #[arg(long = "allow-host", value_name = "NAME")]
        allow_hosts: Vec<String>,
    },
    /// Fleet metrics for Prometheus (text format) or JSON.
    Metrics {
        /// Output format.
        #[arg(long, value_enum, default_value = "prometheus")]
        format: MetricsFormat,
        /// Write atomically to this file (for a node-exporter textfile collector).
        #[arg(long, value_name = "FILE")]
        output: Option<PathBuf>,
        /// Add gauges of the run history over this window (30m, 24h, 7d): runs by outcome,
        /// steps applied and their duration quantiles, failures, heal runs and their failures.
        #[arg(long, value_name = "WINDOW")]
        window: Option<String>,
    },
    /// A window of run history against the one before it: runs, steps applied and their
    /// durations, failures by step and message, drift found and repaired, heal runs, the
    /// slowest schemas. Text, `--json`, or `--html FILE`: one static page with the dashboard.
    Report {
        /// The window: 30m, 24h, 7d, ... (up to 366d).
        #[arg(long, value_name = "WINDOW", default_value = "7d")]
        since: String,
        /// Print JSON (`wasmig.report/1`).
        #[arg(long, conflicts_with = "html")]
        json: bool,
        /// Write one self-contained HTML file (the report and the dashboard) here, 0600.
        #[arg(long, value_name = "FILE")]
        html: Option<PathBuf>,
    },
    /// Past runs: who, where, when, arguments, duration, outcome, counts.
    History {
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// How many runs.
        #[arg(long, default_value_t = 20)]
        limit: i64,
        /// One run in detail: each schema it worked on, with the steps applied, failures,
        /// retries and durations.
        #[arg(long, value_name = "N", conflicts_with = "limit")]
        run: Option<i64>,
    },
    /// Pin plugin artifacts in the lock file by their blake3 (all loaded plugins, or the
    /// named ones).
    Pin {
        /// Plugins to pin (default: every loaded plugin).
        #[arg(id = "pin_plugins", value_name = "PLUGIN")]
        names: Vec<String>,
    },
}

/// `wasmig metrics --format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum MetricsFormat {
    /// Prometheus text exposition format.
    Prometheus,
    /// JSON.
    Json,
}

/// `wasmig plugin ...`
#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// What a component declares, as the host reads it: name, version, kind, scope, needs,
    /// requires, WIT version, each step (description, transactional, reversible, repeatable,
    /// fingerprint, the checksum the ledger records), the artifact's blake3 and size, imports.
    Inspect {
        /// The component.
        file: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Validate every component of a directory and their order (names declared twice,
    /// unknown or impossible requirements, cycles). Exit 0 valid, 1 problems, 2 no directory.
    Check {
        /// The directory [default: the plugins directory].
        dir: Option<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `wasmig tenant ...`
#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Get-or-create tenants: each one's schema, its own role and its registry row; then
    /// apply all tenant plugins to them. Running it twice is fine.
    Create {
        /// Schema names: lowercase letters, digits and `_`, at most 63 bytes.
        #[arg(required = true, value_name = "SCHEMA")]
        schemas: Vec<String>,
        /// Display name.
        #[arg(long)]
        name: Option<String>,
        /// Domain the tenant is served on.
        #[arg(long)]
        domain: Option<String>,
        /// Only create; do not apply plugins.
        #[arg(long)]
        no_migrate: bool,
        /// A label for each tenant: KEY=VALUE (repeatable).
        #[arg(long = "label", value_name = "KEY=VALUE")]
        labels: Vec<String>,
        /// Backups before an existing tenant is migrated.
        #[command(flatten)]
        backup: BackupArgs,
    },
    /// Take over schemas another tool created (e.g. django-tenants): give each its own role,
    /// make that role the owner of the schema and of every object in it, grant the
    /// application role, and register it. Nothing is migrated: record what already ran with
    /// `wasmig baseline`. Running it twice is fine.
    Adopt {
        /// Tenant schemas to adopt.
        #[arg(value_name = "SCHEMA", conflicts_with_all = ["from_query", "shared"])]
        schemas: Vec<String>,
        /// Display name (one schema).
        #[arg(long)]
        name: Option<String>,
        /// Domain the tenant is served on (one schema).
        #[arg(long)]
        domain: Option<String>,
        /// Adopt the schemas a query returns: columns `schema_name` and optionally `name` and
        /// `domain`, read by name.
        #[arg(long, value_name = "SQL", conflicts_with = "shared")]
        from_query: Option<String>,
        /// Adopt the shared schema (`--shared-schema`, e.g. public) instead of tenants.
        #[arg(long)]
        shared: bool,
        /// Say per schema what would change, and change nothing.
        #[arg(long)]
        dry_run: bool,
        /// A label for each adopted tenant: KEY=VALUE (repeatable).
        #[arg(long = "label", value_name = "KEY=VALUE", conflicts_with = "shared")]
        labels: Vec<String>,
    },
    /// Add, change or remove labels of tenants: `wasmig tenant label acme globex region=eu
    /// --remove beta`. Labels are stored in the registry (`wasmig.tenant.labels`, JSON).
    Label {
        /// Tenant schemas, then KEY=VALUE labels to set.
        #[arg(required = true, value_name = "SCHEMA|KEY=VALUE")]
        items: Vec<String>,
        /// A label key to remove (repeatable).
        #[arg(long = "remove", value_name = "KEY")]
        remove: Vec<String>,
    },
    /// List tenants.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Drop a tenant: its schema with all data, its role, its ledger rows.
    Drop {
        /// Schema name.
        schema: String,
        /// Confirm: the data is deleted.
        #[arg(long)]
        yes: bool,
    },
}

/// Which schemas a command that changes the ledger works on.
#[derive(Debug, Args)]
pub struct PickArgs {
    /// Schema (repeatable).
    #[arg(long = "schema", value_name = "SCHEMA")]
    pub schemas: Vec<String>,
    /// Every registered tenant.
    #[arg(long, conflicts_with = "schemas")]
    pub all_tenants: bool,
    /// Only tenants whose labels match: `key=value`, `key!=value`, `key` (has the label),
    /// `!key`, comma-separated; all must hold.
    #[arg(long = "where", id = "pick_where", value_name = "SELECTOR")]
    pub selector: Option<String>,
}

/// `wasmig migrate`
#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// Only the shared schema.
    #[arg(long, conflicts_with = "tenants")]
    pub shared: bool,
    /// Only tenant schemas.
    #[arg(long)]
    pub tenants: bool,
    /// Only this tenant schema (repeatable).
    #[arg(long = "schema", value_name = "SCHEMA")]
    pub schemas: Vec<String>,
    /// Only tenants whose labels match: `key=value`, `key!=value`, `key` (has the label),
    /// `!key`, comma-separated; all must hold.
    #[arg(long = "where", value_name = "SELECTOR", conflicts_with = "shared")]
    pub selector: Option<String>,
    /// Only this plugin (repeatable).
    #[arg(long = "plugin", id = "only_plugin", value_name = "PLUGIN")]
    pub only_plugins: Vec<String>,
    /// Print the plan and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Once more schemas than this failed (a count, or a share of the run's schemas: 5%), no
    /// new schema starts; those running finish [default: no limit].
    #[arg(long, value_name = "N|P%")]
    pub max_failures: Option<String>,
    /// Roll out to tenants in waves: comma-separated sizes, each a count (50), a share of the
    /// tenants with pending work (10%) or `rest`, e.g. `1,10%,rest`. Between waves the wave
    /// must be within --max-failures (default with waves: 0), then `verify` of its tenants
    /// must pass. Overrides the config file's `[[env.NAME.rollout]]`.
    #[arg(long, value_name = "SPEC", conflicts_with = "shared")]
    pub waves: Option<String>,
    /// The order waves take tenants in: `created` (oldest first), `name` or `label:KEY`.
    #[arg(long, value_name = "ORDER", default_value = "created")]
    pub order_by: String,
    /// Backups before migrating.
    #[command(flatten)]
    pub backup: BackupArgs,
    /// When the run fails or is interrupted, POST a JSON summary here (a Slack-compatible
    /// `text` and the `wasmig.run/1` document; 5 s a try, 3 tries; never fails the run)
    /// [config: notify].
    #[arg(long, value_name = "URL")]
    pub notify: Option<String>,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// The backup flags every command that applies steps takes (over the config file's
/// `backup_dir` and `backup_keep_days`).
#[derive(Debug, Args, Default)]
pub struct BackupArgs {
    /// Before applying steps to a schema (the shared one too), dump it (pg_dump, custom
    /// format) and its ledger rows here; a schema whose dump fails is not migrated [config:
    /// backup_dir].
    #[arg(long, value_name = "DIR")]
    pub backup_dir: Option<PathBuf>,
    /// After a run that ended ok, remove dumps older than DAYS from the backup directory; the newest dump
    /// of each schema is always kept, and files wasmig did not name are never touched
    /// [config: backup_keep_days; default: keep every dump].
    #[arg(long, value_name = "DAYS")]
    pub backup_keep_days: Option<u32>,
    /// Take no backup, whatever the config file says.
    #[arg(long, conflicts_with_all = ["backup_dir", "backup_keep_days"])]
    pub no_backup: bool,
}

/// `wasmig verify`
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Apply what is pending, then verify again.
    #[arg(long, conflicts_with = "structure")]
    pub fix: bool,
    /// Compare the catalog structure of tenants at the same ledger state (tables, columns,
    /// constraints, indexes, sequences, views, functions, ...): those outside the most common
    /// structure are listed with what differs. Exit 1 when any tenant differs.
    #[arg(long)]
    pub structure: bool,
    /// With --structure: compare every tenant at this tenant's ledger state with it.
    #[arg(long, value_name = "SCHEMA", requires = "structure")]
    pub reference: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// Only this tenant (repeatable).
    #[arg(long = "tenant", value_name = "SCHEMA")]
    pub tenants: Vec<String>,
    /// Only tenants whose labels match: `key=value`, `key!=value`, `key` (has the label),
    /// `!key`, comma-separated; all must hold.
    #[arg(long = "where", id = "verify_where", value_name = "SELECTOR")]
    pub selector: Option<String>,
    /// Only this plugin (repeatable).
    #[arg(
        long = "plugin",
        id = "verify_plugin",
        value_name = "PLUGIN",
        conflicts_with = "structure"
    )]
    pub only_plugins: Vec<String>,
    /// Backups before --fix applies steps.
    #[command(flatten)]
    pub backup: BackupArgs,
    /// With --fix: when the fix fails or is interrupted, POST a JSON summary here [config:
    /// notify].
    #[arg(long, value_name = "URL", id = "verify_notify")]
    pub notify: Option<String>,
}

/// `wasmig status`
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print JSON (the summary, and every schema when they are listed).
    #[arg(long)]
    pub json: bool,
    /// Only tenants whose labels match: `key=value`, `key!=value`, `key` (has the label),
    /// `!key`, comma-separated; all must hold.
    #[arg(long = "where", id = "status_where", value_name = "SELECTOR")]
    pub selector: Option<String>,
    /// Only this tenant (repeatable).
    #[arg(long = "schema", id = "status_schema", value_name = "SCHEMA")]
    pub schemas: Vec<String>,
    /// Only this plugin's steps count (repeatable).
    #[arg(long = "plugin", id = "status_plugin", value_name = "PLUGIN")]
    pub plugins: Vec<String>,
    /// Only schemas that are not up to date (pending, held, failed, drifted, forged).
    #[arg(long)]
    pub problems: bool,
    /// A line per schema however many there are (above 50 schemas the default is the
    /// fleet's summary: per plugin, schemas by last applied step; counts by state; outliers).
    #[arg(long)]
    pub all: bool,
    /// At most this many outliers in the summary.
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub limit: usize,
}

#[cfg(test)]
mod tests;
