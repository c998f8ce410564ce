//! `reference`: currencies and countries in the shared schema. The table comes from a SQL
//! step; its rows from a code step that upserts by ISO code, so editing the lists in
//! `reference.rs` is a new step, never an edit of an applied one. The plugin lives in
//! `reference.rs` so that `test-fixtures/reference-next` can extend it.
mod reference;

wasmig_sdk::export_plugin!(reference::plugin);
