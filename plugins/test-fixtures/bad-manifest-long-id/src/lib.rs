//! Test fixture: a step id longer than the 128-byte limit.
const LONG: &str = "x_________________________________________________________________________________________________________________________________________________________________________________________________x";
fn plugin() -> wasmig_sdk::Plugin {
    wasmig_sdk::Plugin::migration("long-id").sql(LONG, "Long id", "SELECT 1")
}
wasmig_sdk::export_plugin!(plugin);
