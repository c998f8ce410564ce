//! `customers`: customers, addresses and orders (orders reference carriers), one step per
//! file of `sql/`.
use wasmig_sdk::{Plugin, export_plugin, sql_dir};

fn plugin() -> Plugin {
    Plugin::migration("customers")
        .version(env!("CARGO_PKG_VERSION"))
        .requires("carriers")
        .steps_from(sql_dir!("sql"))
}

export_plugin!(plugin);
