//! `finance` as its next release: the released steps (`../finance/sql`) plus the pending
//! 0004 (an external reference column and its index, with its revert) from its own `sql/`.
//! Same plugin name, so deploying this artifact instead of `finance.wasm` leaves exactly one
//! step pending on every tenant.
use wasmig_sdk::{Plugin, export_plugin, sql_dir};

fn plugin() -> Plugin {
    Plugin::migration("finance")
        .version(env!("CARGO_PKG_VERSION"))
        .requires("customers")
        .requires("suppliers")
        .steps_from(sql_dir!("../finance/sql"))
        .steps_from(sql_dir!("sql"))
}

export_plugin!(plugin);
