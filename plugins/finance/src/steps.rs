//! The released finance steps (shared with `finance-next`, which adds the pending 0004).
use wasmig_sdk::Plugin;

pub fn plugin() -> Plugin {
    Plugin::migration("finance")
        .version(env!("CARGO_PKG_VERSION"))
        .requires("customers")
        .requires("suppliers")
        .sql(
            "0001_initial",
            "Create invoice, invoice line and payment",
            include_str!("../sql/0001_initial.sql"),
        )
        .sql(
            "0002_payment_reference_invoice_invoice_status_due_idx_and_more",
            "Payment reference, invoice status/due index and more",
            include_str!(
                "../sql/0002_payment_reference_invoice_invoice_status_due_idx_and_more.sql"
            ),
        )
        .sql(
            "0003_invoice_paid_at_invoiceline_tax_rate_and_more",
            "Invoice paid_at, line tax rate and more",
            include_str!("../sql/0003_invoice_paid_at_invoiceline_tax_rate_and_more.sql"),
        )
}
