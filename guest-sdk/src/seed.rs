//! Idempotent seed helpers: get-or-create and upsert by natural key.
//!
//! Identifiers are quoted here; values are always bound as parameters.

use crate::db::{Db, Error, ToValue, Value};

/// A natural key: the columns (and values) that identify a row.
///
/// ```
/// let key: wasmig_sdk::Key<'_> = &[("code", &"kg"), ("region", &"eu")];
/// ```
pub type Key<'a> = &'a [(&'a str, &'a dyn ToValue)];

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

struct Insert {
    sql_head: String,
    conflict_cols: String,
    params: Vec<Value>,
    value_cols: Vec<String>,
}

fn build_insert(table: &str, key: Key<'_>, values: Key<'_>) -> Insert {
    let mut cols = Vec::new();
    let mut params = Vec::new();
    for (c, v) in key.iter().chain(values.iter()) {
        cols.push(quote_ident(c));
        params.push(v.to_value());
    }
    let placeholders: Vec<String> = (1..=params.len()).map(|i| format!("${i}")).collect();
    Insert {
        sql_head: format!(
            "INSERT INTO {} ({}) VALUES ({})",
            quote_ident(table),
            cols.join(", "),
            placeholders.join(", ")
        ),
        conflict_cols: key
            .iter()
            .map(|(c, _)| quote_ident(c))
            .collect::<Vec<_>>()
            .join(", "),
        params,
        value_cols: values.iter().map(|(c, _)| quote_ident(c)).collect(),
    }
}

fn refs(params: &[Value]) -> Vec<&dyn ToValue> {
    params.iter().map(|p| p as &dyn ToValue).collect()
}

impl Db {
    /// Inserts the row unless a row with the same `key` exists (needs a unique constraint on
    /// the key columns); returns `true` when it inserted. Existing rows are left as they are.
    ///
    /// ```no_run
    /// # fn step(db: &wasmig_sdk::Db) -> Result<(), wasmig_sdk::Error> {
    /// let inserted = db.get_or_create("unit", &[("code", &"kg")], &[("name", &"kilogram")])?;
    /// # Ok(()) }
    /// ```
    pub fn get_or_create(&self, table: &str, key: Key<'_>, values: Key<'_>) -> Result<bool, Error> {
        let ins = build_insert(table, key, values);
        let sql = format!(
            "{} ON CONFLICT ({}) DO NOTHING",
            ins.sql_head, ins.conflict_cols
        );
        Ok(self.execute(&sql, &refs(&ins.params))? == 1)
    }

    /// Lets every tenant read `table` (shared-scope plugins only): grants SELECT to the
    /// tenant group role the host names in the session setting `wasmig.tenant_group`.
    /// Tenants never get more than read access to the shared schema.
    ///
    /// ```no_run
    /// # fn step(db: &wasmig_sdk::Db) -> Result<(), wasmig_sdk::Error> {
    /// db.grant_read_to_tenants("currency")?; // a shared plugin's table, read by every tenant
    /// # Ok(()) }
    /// ```
    pub fn grant_read_to_tenants(&self, table: &str) -> Result<(), Error> {
        let group: String = self
            .query(
                "SELECT current_setting('wasmig.tenant_group', true) AS g",
                &[],
            )?
            .first()
            .map(|r| r.get::<Option<String>>("g"))
            .transpose()?
            .flatten()
            .filter(|g| !g.is_empty())
            .ok_or_else(|| {
                Error::msg("the host did not name a tenant group (is this a shared-scope plugin?)")
            })?;
        self.execute(
            &format!(
                "GRANT SELECT ON {} TO {}",
                quote_ident(table),
                quote_ident(&group)
            ),
            &[],
        )?;
        Ok(())
    }

    /// Inserts the row, or updates the `values` columns of the row with the same `key`.
    ///
    /// ```no_run
    /// # fn step(db: &wasmig_sdk::Db) -> Result<(), wasmig_sdk::Error> {
    /// db.upsert("unit", &[("code", &"kg")], &[("name", &"kilogram"), ("factor", &1.0)])?;
    /// # Ok(()) }
    /// ```
    pub fn upsert(&self, table: &str, key: Key<'_>, values: Key<'_>) -> Result<(), Error> {
        let ins = build_insert(table, key, values);
        let action = if ins.value_cols.is_empty() {
            "DO NOTHING".to_owned()
        } else {
            let sets: Vec<String> = ins
                .value_cols
                .iter()
                .map(|c| format!("{c} = EXCLUDED.{c}"))
                .collect();
            format!("DO UPDATE SET {}", sets.join(", "))
        };
        let sql = format!(
            "{} ON CONFLICT ({}) {action}",
            ins.sql_head, ins.conflict_cols
        );
        self.execute(&sql, &refs(&ins.params))?;
        Ok(())
    }
}
