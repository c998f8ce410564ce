//! Test fixture: `reference` plus a step that needs an exclusive lock on a shared table.
#[path = "../../../reference/src/reference.rs"]
mod reference;

fn plugin() -> wasmig_sdk::Plugin {
    reference::plugin().sql(
        "0004_currency_symbol",
        "Add a symbol to currencies",
        "ALTER TABLE currency ADD COLUMN symbol text",
    )
}

wasmig_sdk::export_plugin!(plugin);
