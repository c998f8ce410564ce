//! Test fixture: a step with an empty id.
fn plugin() -> wasmig_sdk::Plugin {
    wasmig_sdk::Plugin::migration("empty-id").sql("", "No id", "SELECT 1")
}
wasmig_sdk::export_plugin!(plugin);
