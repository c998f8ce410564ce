//! Test fixture: a plugin that attacks its host. Its one step reads which attack to run from
//! `attack_plan (attack text, target text)` in its own schema (written by the test), so each
//! attack is real plugin code running under the real sandbox. `none` behaves.
mod attacks;

use wasmig_sdk::{Plugin, code_step, export_plugin};

fn plugin() -> Plugin {
    Plugin::migration("hostile").step(code_step!("0001_attack", "Attack the host", |db| {
        let (name, target) = attacks::plan(db)?;
        attacks::attack(db, &name, &target)
    }))
}

export_plugin!(plugin);
