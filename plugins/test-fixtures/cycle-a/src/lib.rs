//! Test fixture: `cycle-a` requires `cycle-b`, which requires `cycle-a`.
fn plugin() -> wasmig_sdk::Plugin {
    wasmig_sdk::Plugin::migration("cycle-a")
        .requires("cycle-b")
        .sql("0001", "Noop", "SELECT 1")
}
wasmig_sdk::export_plugin!(plugin);
