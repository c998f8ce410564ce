//! What `verify --structure` prints: per ledger state, the baseline tenant and how many share
//! its structure, then each tenant that differs with its differences object by object, as
//! text or as the `wasmig.structure/1` document. Object names and definitions are the
//! tenant's own text, so they are printed inert (a name cannot move the cursor or fake a line).

use std::collections::HashMap;

use serde::Serialize;

use super::{Output, print_document};
use crate::plan::StepRef;
use crate::structure::{Basis, Change, Cohort, Difference, Judgement, SHOWN_DIFFERENCES};
use crate::text::inert;

/// Differences printed per tenant in text (JSON has them all).
const TEXT_DIFFERENCES: usize = 20;
/// Characters of a definition printed in text.
const TEXT_DEFINITION: usize = 160;

#[derive(Serialize)]
struct DifferenceJson<'a> {
    change: &'static str,
    kind: &'a str,
    name: &'a str,
    definition: &'a str,
    baseline_definition: Option<&'a str>,
}

impl<'a> DifferenceJson<'a> {
    fn new(d: &'a Difference) -> Self {
        let (change, baseline_definition) = match &d.change {
            Change::Extra => ("extra", None),
            Change::Missing => ("missing", None),
            Change::Changed(was) => ("changed", Some(was.as_str())),
        };
        DifferenceJson {
            change,
            kind: &d.kind,
            name: &d.name,
            definition: &d.definition,
            baseline_definition,
        }
    }
}

#[derive(Serialize)]
struct DifferingJson<'a> {
    schema: &'a str,
    fingerprint: &'a str,
    object_count: i64,
    /// `null` when more tenants differ than are shown.
    differences: Option<Vec<DifferenceJson<'a>>>,
}

#[derive(Serialize)]
struct BaselineJson<'a> {
    schema: &'a str,
    fingerprint: &'a str,
    object_count: i64,
    basis: &'static str,
}

#[derive(Serialize)]
struct CohortJson<'a> {
    step_count: usize,
    last_steps: Vec<StepRef>,
    baseline: BaselineJson<'a>,
    matching_count: usize,
    matching: Vec<&'a str>,
    differing: Vec<DifferingJson<'a>>,
    missing: Vec<&'a str>,
}

#[derive(Serialize)]
struct StructureJson<'a> {
    tenant_count: usize,
    matching_count: usize,
    differing_count: usize,
    missing_count: usize,
    not_compared_count: usize,
    ledger_states: Vec<CohortJson<'a>>,
    not_compared: Vec<&'a str>,
}

fn basis_name(b: Basis) -> &'static str {
    match b {
        Basis::Reference => "reference",
        Basis::Majority => "majority",
        Basis::Tie => "tie",
    }
}

fn cohort_json<'a>(c: &'a Cohort, shown: &'a HashMap<String, Vec<Difference>>) -> CohortJson<'a> {
    CohortJson {
        step_count: c.ledger.step_count(),
        last_steps: c.ledger.last_steps(),
        baseline: BaselineJson {
            schema: c.baseline.0.as_str(),
            fingerprint: &c.baseline.1.hash,
            object_count: c.baseline.1.objects,
            basis: basis_name(c.basis),
        },
        matching_count: c.matching.len(),
        matching: c.matching.iter().map(|s| s.as_str()).collect(),
        differing: c
            .differing
            .iter()
            .map(|(s, fp)| DifferingJson {
                schema: s.as_str(),
                fingerprint: &fp.hash,
                object_count: fp.objects,
                differences: shown
                    .get(s.as_str())
                    .map(|d| d.iter().map(DifferenceJson::new).collect()),
            })
            .collect(),
        missing: c.missing.iter().map(|s| s.as_str()).collect(),
    }
}

/// `wasmig verify --structure` output; returns whether no tenant differs or is missing.
/// `shown` holds the differences of the differing tenants that were read.
pub fn print_structure(
    j: &Judgement,
    shown: &HashMap<String, Vec<Difference>>,
    out: Output,
    quiet: bool,
) -> bool {
    let matching: usize = j.cohorts.iter().map(|c| c.matching.len()).sum();
    let differing: usize = j.cohorts.iter().map(|c| c.differing.len()).sum();
    let missing = j.missing_only.len() + j.cohorts.iter().map(|c| c.missing.len()).sum::<usize>();
    let total = matching + differing + missing + j.not_compared.len();
    if out.json() {
        let mut states: Vec<CohortJson<'_>> =
            j.cohorts.iter().map(|c| cohort_json(c, shown)).collect();
        if !j.missing_only.is_empty() {
            // No schema exists at that ledger state: nothing to compare, every one missing.
            states.push(CohortJson {
                step_count: 0,
                last_steps: vec![],
                baseline: BaselineJson {
                    schema: "",
                    fingerprint: "",
                    object_count: 0,
                    basis: "none",
                },
                matching_count: 0,
                matching: vec![],
                differing: vec![],
                missing: j.missing_only.iter().map(|s| s.as_str()).collect(),
            });
        }
        print_document(
            "wasmig.structure/1",
            StructureJson {
                tenant_count: total,
                matching_count: matching,
                differing_count: differing,
                missing_count: missing,
                not_compared_count: j.not_compared.len(),
                ledger_states: states,
                not_compared: j.not_compared.iter().map(|s| s.as_str()).collect(),
            },
        );
        return j.problem_count() == 0;
    }
    if !quiet {
        if differing > 0 {
            crate::outln!(
                "(+ only in the tenant, - only in the baseline, ~ defined differently: baseline -> tenant)"
            );
        }
        for c in &j.cohorts {
            print_cohort(c, shown);
        }
        for s in &j.missing_only {
            crate::outln!("{s}: registered, but its schema does not exist");
        }
        if !j.not_compared.is_empty() {
            let names: Vec<&str> = j.not_compared.iter().map(|s| s.as_str()).collect();
            crate::outln!(
                "not compared, at another ledger state than the reference (see `wasmig verify`): {}",
                names.join(", ")
            );
        }
    }
    crate::outln!(
        "{total} tenant(s): {matching} share their baseline's structure, {differing} differ, {missing} missing{}",
        if j.not_compared.is_empty() {
            String::new()
        } else {
            format!(", {} not compared", j.not_compared.len())
        }
    );
    j.problem_count() == 0
}

fn print_cohort(c: &Cohort, shown: &HashMap<String, Vec<Difference>>) {
    let last: Vec<String> = c
        .ledger
        .last_steps()
        .iter()
        .map(|s| s.to_string())
        .collect();
    let (base, fp) = &c.baseline;
    let size = c.matching.len() + c.differing.len() + c.missing.len();
    let how = match c.basis {
        Basis::Reference => "the reference".to_owned(),
        Basis::Majority => "the most common structure".to_owned(),
        Basis::Tie => "no structure is the most common here; compared with the first of the equally common ones (name the intended one with --reference)".to_owned(),
    };
    crate::outln!(
        "ledger state of {} step(s) (last: {}): {} of {} tenant(s) share the structure of {base} ({} objects, {}; {how})",
        c.ledger.step_count(),
        if last.is_empty() {
            "none".to_owned()
        } else {
            last.join(", ")
        },
        c.matching.len(),
        size,
        fp.objects,
        &fp.hash[..fp.hash.len().min(12)],
    );
    for (t, tfp) in &c.differing {
        let Some(diffs) = shown.get(t.as_str()) else {
            crate::outln!(
                "  {t} differs from {base} ({} objects, {}): not shown, more than {SHOWN_DIFFERENCES} tenants differ; see it with `wasmig verify --structure --tenant {t} --reference {base}`",
                tfp.objects,
                &tfp.hash[..tfp.hash.len().min(12)],
            );
            continue;
        };
        crate::outln!("  {t} differs from {base} ({} objects):", tfp.objects);
        for d in diffs.iter().take(TEXT_DIFFERENCES) {
            let what = format!("{} {}", d.kind, inert(&d.name, TEXT_DEFINITION));
            let def = inert(&d.definition, TEXT_DEFINITION);
            match &d.change {
                Change::Extra => crate::outln!("    + {what}: {def}"),
                Change::Missing => crate::outln!("    - {what}: {def}"),
                Change::Changed(was) => {
                    crate::outln!("    ~ {what}: {} -> {def}", inert(was, TEXT_DEFINITION))
                }
            }
        }
        if diffs.len() > TEXT_DIFFERENCES {
            crate::outln!(
                "    ... and {} more (all of them with --json)",
                diffs.len() - TEXT_DIFFERENCES
            );
        }
        if diffs.is_empty() {
            // Same objects, other fingerprint: only possible if the catalog changed between
            // the two reads.
            crate::outln!(
                "    (no difference left when read again: the schema changed during the check; run it again)"
            );
        }
    }
    for m in &c.missing {
        crate::outln!("  {m}: registered, but its schema does not exist");
    }
}
