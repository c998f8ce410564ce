//! `carriers`: carriers, drivers and vehicles (tenant migrations 0001-0003 of the reference
//! workload).
use wasmig_sdk::{Plugin, export_plugin};

fn plugin() -> Plugin {
    Plugin::migration("carriers")
        .version(env!("CARGO_PKG_VERSION"))
        .sql(
            "0001_initial",
            "Create carrier, driver and vehicle",
            include_str!("../sql/0001_initial.sql"),
        )
        .sql(
            "0002_carrier_insurance_expires_on_driver_email_and_more",
            "Carrier insurance expiry, driver email and more",
            include_str!("../sql/0002_carrier_insurance_expires_on_driver_email_and_more.sql"),
        )
        .sql(
            "0003_driver_is_active_vehicle_vin_and_more",
            "Driver is_active, vehicle VIN and more",
            include_str!("../sql/0003_driver_is_active_vehicle_vin_and_more.sql"),
        )
}

export_plugin!(plugin);
