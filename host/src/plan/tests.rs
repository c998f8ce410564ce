//! Planning and ordering tests (pure: no database).

use super::*;

fn plugin(
    name: &str,
    scope: Scope,
    kind: Kind,
    requires: &[&str],
    steps: &[(&str, &str)],
) -> PluginSpec {
    PluginSpec {
        name: name.into(),
        version: "1".into(),
        kind,
        scope,
        needs: None,
        requires: requires.iter().map(|s| (*s).into()).collect(),
        steps: steps
            .iter()
            .map(|(id, fp)| StepSpec {
                id: (*id).into(),
                description: String::new(),
                fingerprint: (*fp).into(),
                transactional: true,
                reversible: Some(true),
                repeatable: false,
                accepts: Vec::new(),
                sql: None,
                checksum: step_checksum(name, id, fp),
            })
            .collect(),
        artifact_checksum: String::new(),
    }
}

#[test]
fn a_declared_tier_is_run_exactly_when_granted_and_refused_with_the_grant_to_give_when_not() {
    let mut seed = plugin("lookup-seed", Scope::Tenant, Kind::Seed, &[], &[("1", "a")]);
    // WIT 0.1.0: nothing declared, the grant is what it runs with.
    assert_eq!(Tier::effective(&seed, Tier::Schema), Ok(Tier::Schema));
    // Declared within the grant: exactly what it declared, never more.
    seed.needs = Some(Tier::Data);
    assert_eq!(Tier::effective(&seed, Tier::Full), Ok(Tier::Data));
    seed.needs = Some(Tier::Schema);
    assert_eq!(Tier::effective(&seed, Tier::Schema), Ok(Tier::Schema));
    // More than granted: refused, naming what to grant.
    let short = Tier::effective(&seed, Tier::Data).unwrap_err();
    assert_eq!((short.needs, short.granted), (Tier::Schema, Tier::Data));
    let said = short.to_string();
    assert!(
        said.contains("`lookup-seed` needs the `schema` tier but is granted `data`"),
        "{said}"
    );
    assert!(said.contains("--grant lookup-seed=schema"), "{said}");
    seed.needs = Some(Tier::Full);
    let said = Tier::effective(&seed, Tier::Schema)
        .unwrap_err()
        .to_string();
    assert!(said.contains("--trust lookup-seed"), "{said}");
}

#[test]
fn tiers_default_by_kind_and_are_raised_only_by_the_operator() {
    let seed = plugin("demo-seed", Scope::Tenant, Kind::Seed, &[], &[("1", "a")]);
    let mig = plugin("notes", Scope::Tenant, Kind::Migration, &[], &[("1", "a")]);
    let shared = plugin(
        "reference",
        Scope::Shared,
        Kind::Migration,
        &[],
        &[("1", "a")],
    );
    assert_eq!(Tier::granted(&seed, &[], &[]), Tier::Data);
    assert_eq!(Tier::granted(&mig, &[], &[]), Tier::Schema);
    assert_eq!(Tier::granted(&shared, &[], &[]), Tier::Full);
    assert_eq!(
        Tier::granted(&seed, &[], &[("demo-seed".into(), Tier::Schema)]),
        Tier::Schema
    );
    assert_eq!(Tier::granted(&mig, &["notes".into()], &[]), Tier::Full);
    // A grant for another plugin changes nothing; the last grant of a name wins.
    assert_eq!(
        Tier::granted(&mig, &[], &[("other".into(), Tier::Full)]),
        Tier::Schema
    );
    assert_eq!(
        Tier::granted(
            &mig,
            &[],
            &[("notes".into(), Tier::Full), ("notes".into(), Tier::Data)]
        ),
        Tier::Data
    );
    assert!(Tier::Data < Tier::Schema && Tier::Schema < Tier::Full);
    for t in [Tier::Data, Tier::Schema, Tier::Full] {
        assert_eq!(Tier::parse(t.as_str()), Some(t));
    }
    assert_eq!(Tier::parse("root"), None);
}

fn names(plugins: &[PluginSpec], order: &[usize]) -> Vec<String> {
    order.iter().map(|&i| plugins[i].name.clone()).collect()
}

fn workload() -> Vec<PluginSpec> {
    use Kind::*;
    use Scope::*;
    vec![
        plugin("seed", Tenant, Seed, &["customers"], &[("1", "a")]),
        plugin(
            "finance",
            Tenant,
            Migration,
            &["customers", "suppliers"],
            &[("1", "a")],
        ),
        plugin("suppliers", Tenant, Migration, &["carriers"], &[("1", "a")]),
        plugin("customers", Tenant, Migration, &["carriers"], &[("1", "a")]),
        plugin(
            "carriers",
            Tenant,
            Migration,
            &[],
            &[("1", "a"), ("2", "b")],
        ),
        plugin("reference", Shared, Migration, &[], &[("1", "a")]),
    ]
}

#[test]
fn orders_shared_first_then_requirements_then_seeds() {
    let p = workload();
    let order = order_plugins(&p).unwrap();
    assert_eq!(
        names(&p, &order),
        [
            "reference",
            "carriers",
            "customers",
            "suppliers",
            "finance",
            "seed"
        ]
    );
}

#[test]
fn refuses_unknown_requirement_cycle_and_bad_direction() {
    use Kind::*;
    use Scope::*;
    let p = vec![plugin("a", Tenant, Migration, &["zzz"], &[])];
    assert!(matches!(
        order_plugins(&p),
        Err(PlanError::UnknownRequirement { .. })
    ));
    let p = vec![
        plugin("a", Tenant, Migration, &["b"], &[]),
        plugin("b", Tenant, Migration, &["c"], &[]),
        plugin("c", Tenant, Migration, &["a"], &[]),
        plugin("d", Tenant, Migration, &[], &[]),
    ];
    let Err(PlanError::Cycle(c)) = order_plugins(&p) else {
        panic!("cycle expected")
    };
    assert_eq!(c.first(), c.last());
    assert_eq!(c.len(), 4);
    let p = vec![
        plugin("s", Shared, Migration, &["t"], &[]),
        plugin("t", Tenant, Migration, &[], &[]),
    ];
    assert!(matches!(
        order_plugins(&p),
        Err(PlanError::BadRequirement { .. })
    ));
    let p = vec![
        plugin("m", Tenant, Migration, &["s"], &[]),
        plugin("s", Tenant, Seed, &[], &[]),
    ];
    assert!(matches!(
        order_plugins(&p),
        Err(PlanError::BadRequirement { .. })
    ));
}

fn entry(p: &PluginSpec, step: usize) -> LedgerEntry {
    LedgerEntry {
        plugin: p.name.clone(),
        step_id: p.steps[step].id.clone(),
        checksum: p.steps[step].checksum.clone(),
        authentic: true,
        run_id: None,
        artifact_checksum: String::new(),
    }
}

#[test]
fn pending_drift_and_unknown() {
    let p = workload();
    let order = order_plugins(&p).unwrap();
    let all = Selection::default();
    let fresh = plan_schema(&p, &order, ("t", Scope::Tenant), &all, &[]);
    assert_eq!(fresh.pending.len(), 6);
    assert_eq!(p[fresh.pending[0].plugin].name, "carriers");

    let carriers = &p[4];
    let ledger = vec![entry(carriers, 0)];
    let partial = plan_schema(&p, &order, ("t", Scope::Tenant), &all, &ledger);
    assert_eq!(partial.applied, 1);
    assert_eq!(partial.pending.len(), 5);
    assert_eq!(partial.pending[0], PendingStep { plugin: 4, step: 1 });

    let mut drifted = ledger.clone();
    drifted[0].checksum = "0".repeat(64);
    drifted.push(LedgerEntry {
        plugin: "gone".into(),
        step_id: "x".into(),
        checksum: "c".into(),
        authentic: true,
        run_id: None,
        artifact_checksum: String::new(),
    });
    let d = plan_schema(&p, &order, ("t", Scope::Tenant), &all, &drifted);
    assert!(d.refused(), "a drifted schema runs nothing");
    assert_eq!(d.pending.len(), 5, "the drifted step itself is not pending");
    assert_eq!(d.drift.len(), 1);
    assert_eq!(d.drift[0].recorded, "0".repeat(64));
    assert_eq!(d.unknown, vec![StepRef::new("gone", "x")]);

    let shared = plan_schema(&p, &order, ("t", Scope::Shared), &all, &[]);
    assert_eq!(shared.pending.len(), 1);
}

#[test]
fn forged_rows_refuse_the_schema_and_count_as_not_applied() {
    let p = workload();
    let order = order_plugins(&p).unwrap();
    let mut forged = entry(&p[4], 0);
    forged.authentic = false;
    let plan = plan_schema(
        &p,
        &order,
        ("t", Scope::Tenant),
        &Selection::default(),
        &[forged],
    );
    assert_eq!(plan.forged, vec![StepRef::new("carriers", "1")]);
    assert!(plan.refused());
    assert_eq!(plan.applied, 0);
    assert_eq!(plan.pending.len(), 6);
}

#[test]
fn selection_is_blocked_by_pending_requirements() {
    let p = workload();
    let order = order_plugins(&p).unwrap();
    let sel = Selection {
        plugins: vec!["customers".into()],
        ..Default::default()
    };
    let blocked = plan_schema(&p, &order, ("t", Scope::Tenant), &sel, &[]);
    assert!(
        blocked
            .blocked
            .as_deref()
            .unwrap()
            .contains("--plugin carriers")
    );
    let ledger: Vec<_> = (0..2).map(|s| entry(&p[4], s)).collect();
    let ok = plan_schema(&p, &order, ("t", Scope::Tenant), &sel, &ledger);
    assert!(ok.blocked.is_none());
    assert_eq!(ok.pending.len(), 1);
    assert!(
        Selection {
            plugins: vec!["nope".into()],
            ..Default::default()
        }
        .validate(&p)
        .is_err()
    );
}

#[test]
fn checksum_is_unambiguous() {
    assert_ne!(step_checksum("ab", "c", "d"), step_checksum("a", "bc", "d"));
    assert_eq!(step_checksum("a", "b", "c").len(), 64);
}

fn by_run(p: &PluginSpec, step: usize, run: i64) -> LedgerEntry {
    LedgerEntry {
        run_id: Some(run),
        ..entry(p, step)
    }
}

#[test]
fn a_run_is_reverted_dependants_first_and_newest_first() {
    let p = workload();
    let order = order_plugins(&p).unwrap();
    // Run 7 applied carriers 1 and 2, customers 1 and the seed 1 (seed requires customers);
    // the ledger lists them in no useful order.
    let ledger = vec![
        by_run(&p[3], 0, 7),
        by_run(&p[4], 0, 7),
        by_run(&p[0], 0, 7),
        by_run(&p[4], 1, 7),
    ];
    let steps = revert_plan(&p, &order, &ledger, RevertOf::Run(7)).unwrap();
    let named: Vec<(&str, &str)> = steps
        .iter()
        .map(|s| {
            (
                p[s.plugin].name.as_str(),
                p[s.plugin].steps[s.step].id.as_str(),
            )
        })
        .collect();
    assert_eq!(
        named,
        [
            ("seed", "1"),
            ("customers", "1"),
            ("carriers", "2"),
            ("carriers", "1")
        ]
    );
    // Nothing of another run is touched.
    assert!(
        revert_plan(&p, &order, &ledger, RevertOf::Run(8))
            .unwrap()
            .is_empty()
    );
}

#[test]
fn a_run_revert_is_refused_for_every_step_it_cannot_undo() {
    let mut p = workload();
    let order = order_plugins(&p).unwrap();
    p[4].steps[0].reversible = Some(false);
    p[3].steps[0].reversible = None;
    let mut changed = by_run(&p[4], 1, 7);
    changed.checksum = "0".repeat(64);
    let ledger = vec![
        by_run(&p[4], 0, 7),
        changed,
        by_run(&p[3], 0, 7),
        // A later run built on run 7: the supplier migration requires carriers.
        by_run(&p[2], 0, 9),
        // An earlier run's step is no obstacle.
        by_run(&p[5], 0, 3),
    ];
    let problems = revert_plan(&p, &order, &ledger, RevertOf::Run(7)).unwrap_err();
    let all = problems.join("\n");
    assert!(
        all.contains("step `1` of plugin `carriers` is irreversible"),
        "{all}"
    );
    assert!(
        all.contains("step `2` of plugin `carriers` was applied with other content"),
        "{all}"
    );
    assert!(
        all.contains("plugin `customers` was built for a WIT version that does not say"),
        "{all}"
    );
    assert!(
        all.contains(
            "step `1` of plugin `suppliers` was applied on top of run 7's steps by a later run, 9"
        ),
        "{all}"
    );
    assert_eq!(problems.len(), 4, "{all}");
    // A step of a plugin no longer loaded.
    let mut gone = by_run(&p[4], 0, 7);
    gone.plugin = "gone".into();
    let problems = revert_plan(&p, &order, &[gone], RevertOf::Run(7)).unwrap_err();
    assert!(
        problems[0].contains("no loaded plugin is named `gone`"),
        "{problems:?}"
    );
}

#[test]
fn a_plugin_revert_keeps_the_steps_before_from_and_waits_for_its_dependants() {
    let p = workload();
    let order = order_plugins(&p).unwrap();
    let carriers = &p[4];
    let ledger = vec![entry(carriers, 0), entry(carriers, 1)];
    let steps = revert_plan(&p, &order, &ledger, RevertOf::Plugin { plugin: 4, from: 1 }).unwrap();
    assert_eq!(steps, [PendingStep { plugin: 4, step: 1 }]);
    let mut with_dependant = ledger.clone();
    with_dependant.push(entry(&p[3], 0));
    let problems = revert_plan(
        &p,
        &order,
        &with_dependant,
        RevertOf::Plugin { plugin: 4, from: 0 },
    )
    .unwrap_err();
    assert!(
        problems[0].contains("required by `customers`"),
        "{problems:?}"
    );
}

#[test]
fn accepted_fingerprints_repeatable_steps_and_a_manifest_that_is_not_deterministic() {
    let mut p = workload();
    let order = order_plugins(&p).unwrap();
    let all = Selection::default();
    // An applied row with an earlier fingerprint the plugin accepts is applied, not drift.
    let carriers = 4;
    let mut row = entry(&p[carriers], 0);
    row.checksum = "earlier".into();
    p[carriers].steps[0].accepts = vec!["earlier".into()];
    let plan = plan_schema(&p, &order, ("t", Scope::Tenant), &all, &[row.clone()]);
    assert!(plan.drift.is_empty(), "{:?}", plan.drift);
    // The seed's step changed: repeatable, it is pending again and marked as a re-run.
    let seed = 0;
    p[seed].artifact_checksum = "new artifact".into();
    p[seed].steps[0].repeatable = true;
    let mut seeded = entry(&p[seed], 0);
    seeded.checksum = "older content".into();
    seeded.artifact_checksum = "old artifact".into();
    let plan = plan_schema(&p, &order, ("t", Scope::Tenant), &all, &[seeded.clone()]);
    let rerun = PendingStep {
        plugin: seed,
        step: 0,
    };
    assert!(plan.reruns.contains(&rerun) && plan.pending.contains(&rerun));
    assert!(plan.drift.is_empty());
    // The same artifact that recorded the row now says another fingerprint: drift, never an
    // endless re-run.
    seeded.artifact_checksum = "new artifact".into();
    let plan = plan_schema(&p, &order, ("t", Scope::Tenant), &all, &[seeded]);
    assert!(plan.reruns.is_empty());
    assert_eq!(plan.drift.len(), 1);
}

#[test]
fn a_hold_keeps_its_plugin_and_those_that_require_it_waiting_in_its_schema_only() {
    let p = workload();
    let order = order_plugins(&p).unwrap();
    let hold = |plugin: Option<&str>| Selection {
        holds: vec![Hold {
            schema: "t".into(),
            plugin: plugin.map(Into::into),
            reason: "why".into(),
            since: "2026-12-08T00:00:00Z".into(),
        }],
        ..Default::default()
    };
    let names = |steps: &[PendingStep]| -> Vec<&str> {
        steps.iter().map(|s| p[s.plugin].name.as_str()).collect()
    };
    // `customers` held: it and what requires it (`seed`, `finance`) wait; `carriers` and
    // `suppliers` run.
    let plan = plan_schema(
        &p,
        &order,
        ("t", Scope::Tenant),
        &hold(Some("customers")),
        &[],
    );
    assert!(!plan.refused(), "a hold is not a refusal");
    let mut running = names(&plan.pending);
    running.dedup();
    assert_eq!(running, ["carriers", "suppliers"]);
    let mut waiting = names(&plan.on_hold);
    waiting.sort_unstable();
    assert_eq!(waiting, ["customers", "finance", "seed"]);
    // Another schema is not held.
    let other = plan_schema(
        &p,
        &order,
        ("u", Scope::Tenant),
        &hold(Some("customers")),
        &[],
    );
    assert_eq!(other.pending.len(), 6);
    assert!(other.on_hold.is_empty());
    // The whole schema held: nothing runs.
    let whole = plan_schema(&p, &order, ("t", Scope::Tenant), &hold(None), &[]);
    assert!(whole.pending.is_empty());
    assert_eq!(whole.on_hold.len(), 6);
    // A held plugin with nothing pending holds nothing back.
    let ledger: Vec<_> = (0..1).map(|s| entry(&p[3], s)).collect();
    let done = plan_schema(
        &p,
        &order,
        ("t", Scope::Tenant),
        &hold(Some("customers")),
        &ledger,
    );
    assert!(done.on_hold.is_empty());
    assert_eq!(done.pending.len(), 5);
}
