//! `finance`: invoices, invoice lines and payments (reference customers and suppliers), one
//! step per file of `sql/`.
use wasmig_sdk::{Plugin, export_plugin, sql_dir};

fn plugin() -> Plugin {
    Plugin::migration("finance")
        .version(env!("CARGO_PKG_VERSION"))
        .requires("customers")
        .requires("suppliers")
        .steps_from(sql_dir!("sql"))
}

export_plugin!(plugin);
