//! `demo-seed`: demo carriers, customers and addresses for a fresh tenant, written
//! idempotently (get-or-create by natural key), so rerunning it never duplicates rows.
use wasmig_sdk::{Db, Error, Plugin, code_step, export_plugin};

fn carrier_id(db: &Db, name: &str) -> Result<i64, Error> {
    let rows = db.query("SELECT id FROM carriers_carrier WHERE name = $1", &[&name])?;
    rows.first()
        .ok_or_else(|| Error::msg(format!("carrier `{name}` is missing")))?
        .get("id")
}

fn plugin() -> Plugin {
    Plugin::seed("demo-seed")
        .version(env!("CARGO_PKG_VERSION"))
        .requires("carriers")
        .requires("customers")
        .step(code_step!(
            "0001_demo_carriers",
            "Two demo carriers",
            |db| {
                for (name, scac, country) in [("Northwind Freight", "NWFR", "DE"), ("Blue Line Logistics", "BLLG", "NL")] {
                    db.get_or_create(
                        "carriers_carrier",
                        &[("scac_code", &scac)],
                        &[
                            ("name", &name),
                            ("country", &country),
                            ("active", &true),
                            ("created_at", &wasmig_sdk::Value::Timestamp("2026-01-01T00:00:00Z".into())),
                        ],
                    )?;
                }
                Ok(())
            }
        ))
        .step(code_step!(
            "0002_demo_customers",
            "Three demo customers with a default address",
            |db| {
                let _ = carrier_id(db, "Northwind Freight")?;
                for (name, email, city) in [
                    ("Acme GmbH", "orders@acme.example", "Berlin"),
                    ("Globex SARL", "buyers@globex.example", "Lyon"),
                    ("Initech BV", "inkoop@initech.example", "Utrecht"),
                ] {
                    db.get_or_create(
                        "customers_customer",
                        &[("email", &email)],
                        &[("name", &name), ("phone", &"+00 000 0000"), ("vat_number", &""), ("created_at", &wasmig_sdk::Value::Timestamp("2026-01-01T00:00:00Z".into()))],
                    )?;
                    let id: i64 = db
                        .query("SELECT id FROM customers_customer WHERE email = $1", &[&email])?
                        .first()
                        .ok_or_else(|| Error::msg("customer vanished"))?
                        .get("id")?;
                    let has_address = db.query(
                        "SELECT 1 FROM customers_address WHERE customer_id = $1 AND is_default",
                        &[&id],
                    )?;
                    if has_address.is_empty() {
                        db.execute(
                            "INSERT INTO customers_address (line1, line2, city, postal_code, country, is_default, customer_id) \
                             VALUES ('1 Main Street', '', $1, '00000', 'DE', true, $2)",
                            &[&city, &id],
                        )?;
                    }
                }
                Ok(())
            }
        ))
}

export_plugin!(plugin);
