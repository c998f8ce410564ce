//! `finance`: invoices, invoice lines and payments (reference customers and suppliers).
mod steps;

wasmig_sdk::export_plugin!(steps::plugin);
