//! Test fixture: the hostile suite's attacks in a non-transactional step, where every
//! statement commits on its own and the host must notice one that leaves a transaction open.
#[path = "../../hostile/src/attacks.rs"]
mod attacks;

use wasmig_sdk::{Plugin, code_step, export_plugin};

fn plugin() -> Plugin {
    Plugin::migration("hostile-nontx").step(
        code_step!(
            "0001_attack",
            "Attack the host outside a transaction",
            |db| {
                let (name, target) = attacks::plan(db)?;
                attacks::attack(db, &name, &target)
            }
        )
        .non_transactional(),
    )
}

export_plugin!(plugin);
