//! Test fixture: `cycle-b` requires `cycle-a`, which requires `cycle-b`.
fn plugin() -> wasmig_sdk::Plugin {
    wasmig_sdk::Plugin::migration("cycle-b")
        .requires("cycle-a")
        .sql("0001", "Noop", "SELECT 1")
}
wasmig_sdk::export_plugin!(plugin);
