//! Test fixture: the hostile plugin (same name, same attacks) declaring that it needs the
//! `full` tier, for the attacks that must be stopped even with a schema owner's rights, and
//! for the refusal of a plugin that needs more than it was granted.
#[path = "../../hostile/src/attacks.rs"]
mod attacks;

use wasmig_sdk::{Plugin, Tier, code_step, export_plugin};

fn plugin() -> Plugin {
    Plugin::migration("hostile")
        .needs(Tier::Full)
        .step(code_step!("0001_attack", "Attack the host", |db| {
            let (name, target) = attacks::plan(db)?;
            attacks::attack(db, &name, &target)
        }))
}

export_plugin!(plugin);
