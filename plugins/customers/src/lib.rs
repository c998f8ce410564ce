//! `customers`: customers, addresses and orders (orders reference carriers).
use wasmig_sdk::{Plugin, export_plugin};

fn plugin() -> Plugin {
    Plugin::migration("customers")
        .version(env!("CARGO_PKG_VERSION"))
        .requires("carriers")
        .sql(
            "0001_initial",
            "Create customer, address and order",
            include_str!("../sql/0001_initial.sql"),
        )
        .sql(
            "0002_customer_vat_number_order_total_and_more",
            "Customer VAT number, order total and more",
            include_str!("../sql/0002_customer_vat_number_order_total_and_more.sql"),
        )
        .sql(
            "0003_order_reference_order_order_status_created_idx_and_more",
            "Order reference, status/created index and more",
            include_str!("../sql/0003_order_reference_order_order_status_created_idx_and_more.sql"),
        )
}

export_plugin!(plugin);
