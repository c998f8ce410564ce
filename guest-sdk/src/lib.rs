//! The wasmig guest SDK: write migration and seed plugins in plain Rust.
//!
//! A plugin is a function returning a [`Plugin`] (its name, kind, scope, requirements and
//! ordered steps) handed to [`export_plugin!`]. Steps are either SQL text ([`Plugin::sql`]) or
//! Rust code ([`code_step!`]). Each step's fingerprint is derived from its content, so editing
//! an applied step is caught by the host as drift, while adding a step is not.
//!
//! ```no_run
//! use wasmig_sdk::{Plugin, export_plugin};
//!
//! fn plugin() -> Plugin {
//!     Plugin::migration("notes")
//!         .sql("0001_init", "Create notes", "CREATE TABLE notes (id bigint PRIMARY KEY);")
//! }
//! export_plugin!(plugin);
//! # fn main() {}
//! ```
//!
//! The plugin never sees WIT types: SQL goes through [`Db`], results come back as [`Rows`]
//! readable by column name, and errors are [`Error`].
//!
//! Module map: `db` (the SQL capability and values), `plugin` (manifest builder and step
//! dispatch), `seed` (idempotent get-or-create/upsert helpers), `log` (messages to the host).

mod db;
pub mod fingerprint;
mod log;
mod plugin;
mod seed;

pub use db::{Db, Error, FromValue, Record, Row, Rows, ToValue, Value};
pub use fingerprint::fingerprint;
pub use log::{debug, error, info, trace, warn};
pub use plugin::{Kind, Plugin, Scope, Step, Tier};
pub use seed::Key;

/// The WIT package version this SDK targets (`wasmig:plugin@...`).
///
/// ```
/// assert_eq!(wasmig_sdk::WIT_VERSION, "0.3.0");
/// ```
pub const WIT_VERSION: &str = "0.3.0";

#[doc(hidden)]
#[allow(unsafe_code, missing_docs, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "migration-plugin",
        path: "wit",
        default_bindings_module: "wasmig_sdk::bindings",
        pub_export_macro: true,
        export_macro_name: "__export_world",
        generate_all,
    });
}

#[doc(hidden)]
pub mod __rt {
    pub use crate::bindings::exports::wasmig::plugin0_3_0::plugin::{Guest, PluginInfo, StepError};
    pub use crate::plugin::{apply, manifest, revert};
}

/// Exports a plugin: `export_plugin!(plugin_fn)` where `plugin_fn: fn() -> Plugin`. Once per
/// plugin crate, at its root.
///
/// ```no_run
/// use wasmig_sdk::{Plugin, export_plugin, sql_dir};
///
/// fn plugin() -> Plugin {
///     Plugin::migration("carriers").steps_from(sql_dir!("../plugins/carriers/sql"))
/// }
///
/// export_plugin!(plugin);
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! export_plugin {
    ($build:path) => {
        #[doc(hidden)]
        struct __WasmigPlugin;

        impl $crate::__rt::Guest for __WasmigPlugin {
            fn manifest() -> $crate::__rt::PluginInfo {
                $crate::__rt::manifest(&$build())
            }
            fn apply(step_id: String) -> Result<(), $crate::__rt::StepError> {
                $crate::__rt::apply(&$build(), &step_id)
            }
            fn revert(step_id: String) -> Result<(), $crate::__rt::StepError> {
                $crate::__rt::revert(&$build(), &step_id)
            }
        }

        $crate::bindings::__export_world!(__WasmigPlugin with_types_in $crate::bindings);
    };
}

/// A folder of SQL files as ordered steps, read at compile time: `sql_dir!("sql")` is an array
/// of [`Step`]s, one per `NNNN_name.sql` file of the folder (relative to the crate's
/// `Cargo.toml`), in file-name order, each with the step id `NNNN_name` and, when a
/// `NNNN_name.revert.sql` sits beside it, that file as its revert. The description is the
/// text of the file's first `--` comment line (else the file name's words). The fingerprint
/// is the SQL text's, exactly as [`Step::sql`] with [`include_str!`] gives it.
///
/// Refused at compile time, naming the file: a `.sql` file not named `NNNN_name.sql`
/// (digits, `_`, lowercase letters, digits and `_`), two files with the same number, a
/// `.revert.sql` without its step, an empty folder. Add a `build.rs` with
/// `println!("cargo:rerun-if-changed=sql");` so that a file added to the folder is picked up
/// (`wasmig new` writes one).
///
/// ```
/// use wasmig_sdk::{Plugin, sql_dir};
///
/// // In a plugin crate: `Plugin::migration("inventory").steps_from(sql_dir!("sql"))`. Here,
/// // the example `carriers` plugin's folder, seen from this crate.
/// let p = Plugin::migration("carriers").steps_from(sql_dir!("../plugins/carriers/sql"));
/// let ids: Vec<&str> = p.steps().iter().map(|s| s.id()).collect();
/// assert_eq!(ids[0], "0001_initial");
/// assert_eq!(ids.len(), 3);
/// ```
pub use wasmig_sdk_macros::sql_dir;

/// Declares a Rust code step: `code_step!("0002_backfill", "Backfill emails", |db| { ... })`.
///
/// The closure must not capture anything; it receives a [`Db`] and returns
/// `Result<(), Error>`. The fingerprint is the blake3 of the closure's source tokens with
/// log text blanked, so comments, formatting and the wording of log lines do not count as
/// changes but any code change does; data the closure reads is covered only when declared
/// with [`Step::covers`] (see the [`fingerprint`](mod@fingerprint) module).
#[macro_export]
macro_rules! code_step {
    ($id:expr, $description:expr, $($body:tt)+) => {
        $crate::Step::code(
            $id,
            $description,
            stringify!($($body)+),
            $($body)+,
        )
    };
}
