//! `finance` as its next release: the released steps plus the pending 0004 (an external
//! reference column and its index), reversible. Same plugin name, so deploying this artifact
//! instead of `finance.wasm` leaves exactly one step pending on every tenant.
use wasmig_sdk::{Plugin, Step, export_plugin};

#[path = "../../finance/src/steps.rs"]
mod released;

fn plugin() -> Plugin {
    released::plugin().step(
        Step::sql(
            "0004_invoice_external_ref_and_more",
            "Invoice external reference and its index",
            include_str!("../sql/finance__0004_invoice_external_ref_and_more.sql"),
        )
        .revert_sql(include_str!(
            "../sql/finance__0004_invoice_external_ref_and_more.revert.sql"
        )),
    )
}

export_plugin!(plugin);
