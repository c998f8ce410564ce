//! `suppliers`: suppliers, contacts and products (products reference carriers).
use wasmig_sdk::{Plugin, export_plugin};

fn plugin() -> Plugin {
    Plugin::migration("suppliers")
        .version(env!("CARGO_PKG_VERSION"))
        .requires("carriers")
        .sql(
            "0001_initial",
            "Create supplier, contact and product",
            include_str!("../sql/0001_initial.sql"),
        )
        .sql(
            "0002_supplier_rating_suppliercontact_role_and_more",
            "Supplier rating, contact role and more",
            include_str!("../sql/0002_supplier_rating_suppliercontact_role_and_more.sql"),
        )
        .sql(
            "0003_product_preferred_carrier_product_weight_kg_and_more",
            "Product preferred carrier, weight and more",
            include_str!("../sql/0003_product_preferred_carrier_product_weight_kg_and_more.sql"),
        )
}

export_plugin!(plugin);
