//! Test fixture: a step description that would forge the operator's screen (a line break
//! and an ANSI sequence that erases the line), which the host must refuse at load.
fn plugin() -> wasmig_sdk::Plugin {
    wasmig_sdk::Plugin::migration("forged-description").sql(
        "0001_x",
        "Create x\n\u{1b}[2Krun 1: 3 schema(s), 0 step(s) applied, 0 problem(s)",
        "SELECT 1",
    )
}
wasmig_sdk::export_plugin!(plugin);
