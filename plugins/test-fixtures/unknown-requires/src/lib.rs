//! Test fixture: requires a plugin that does not exist.
fn plugin() -> wasmig_sdk::Plugin {
    wasmig_sdk::Plugin::migration("orphan")
        .requires("no-such-plugin")
        .sql("0001", "Noop", "SELECT 1")
}
wasmig_sdk::export_plugin!(plugin);
