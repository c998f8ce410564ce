//! `carriers`: carriers, drivers and vehicles (tenant migrations 0001-0003 of the reference
//! workload), one step per file of `sql/`.
use wasmig_sdk::{Plugin, export_plugin, sql_dir};

fn plugin() -> Plugin {
    Plugin::migration("carriers")
        .version(env!("CARGO_PKG_VERSION"))
        .steps_from(sql_dir!("sql"))
}

export_plugin!(plugin);
