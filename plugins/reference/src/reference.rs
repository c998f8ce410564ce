//! `reference`: currencies and countries in the shared schema. The table comes from a SQL
//! step; its rows from a code step that upserts by ISO code, so editing the list below is a
//! new step, never an edit of an applied one.
use wasmig_sdk::{Plugin, code_step};

const CURRENCIES: &[(&str, &str, i32)] = &[
    ("EUR", "Euro", 2),
    ("USD", "US Dollar", 2),
    ("GBP", "Pound Sterling", 2),
    ("CHF", "Swiss Franc", 2),
    ("JPY", "Yen", 0),
    ("SEK", "Swedish Krona", 2),
];

const COUNTRIES: &[(&str, &str, &str)] = &[
    ("DE", "Germany", "EUR"),
    ("FR", "France", "EUR"),
    ("NL", "Netherlands", "EUR"),
    ("US", "United States of America", "USD"),
    ("GB", "United Kingdom", "GBP"),
    ("CH", "Switzerland", "CHF"),
    ("JP", "Japan", "JPY"),
    ("SE", "Sweden", "SEK"),
];

/// The plugin as released.
pub fn plugin() -> Plugin {
    Plugin::migration("reference")
        .version(env!("CARGO_PKG_VERSION"))
        .shared()
        .sql(
            "0001_currencies_countries",
            "Create currency and country",
            include_str!("../sql/0001_currencies_countries.sql"),
        )
        .step(code_step!(
            "0002_load_iso_codes",
            "Load ISO currencies and countries",
            |db| {
                for (code, name, minor) in CURRENCIES {
                    db.upsert(
                        "currency",
                        &[("code", code)],
                        &[("name", name), ("minor_unit", minor)],
                    )?;
                }
                for (code, name, currency) in COUNTRIES {
                    db.upsert(
                        "country",
                        &[("code", code)],
                        &[("name", name), ("currency_code", currency)],
                    )?;
                }
                let n: i64 = db
                    .query("SELECT count(*) AS n FROM country", &[])?
                    .first()
                    .map(|r| r.get("n"))
                    .transpose()?
                    .unwrap_or(0);
                wasmig_sdk::info(&format!("{n} countries loaded"));
                Ok(())
            }
        ))
        .step(code_step!(
            "0003_tenants_read_reference",
            "Let tenants read currencies and countries",
            |db| {
                db.grant_read_to_tenants("currency")?;
                db.grant_read_to_tenants("country")
            }
        ))
}
