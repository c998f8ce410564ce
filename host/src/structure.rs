//! Structural drift across a fleet (`wasmig verify --structure`), decided without I/O from
//! what the catalogs said ([`crate::control::fingerprints`], [`crate::control::objects`]).
//!
//! Tenants are compared only with tenants at the same ledger state (the same steps applied
//! with the same checksums): a tenant one step behind differs for a reason `verify` already
//! reports. Within a state, the tenants sharing the most common fingerprint are the norm and
//! every other tenant differs from it; when two fingerprints tie for most common there is no
//! norm, and every tenant outside the first of them (by its first tenant's name) is reported,
//! with a note to name a reference. With a reference tenant, the tenants at its ledger state
//! are compared with it and the others are listed as not compared.

use std::collections::{BTreeMap, HashMap};

use crate::control::{CatalogObject, Fingerprint};
use crate::names::SchemaName;
use crate::plan::{LedgerEntry, StepRef};

/// How many differing tenants get their difference read and shown; the others are listed
/// with their fingerprint and how to see theirs.
pub const SHOWN_DIFFERENCES: usize = 100;

/// The steps a schema's ledger records, with their checksums, sorted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LedgerState(Vec<(String, String, String)>);

impl LedgerState {
    /// The state of a schema whose ledger holds `entries`.
    pub fn of(entries: &[LedgerEntry]) -> LedgerState {
        let mut v: Vec<_> = entries
            .iter()
            .map(|e| (e.plugin.clone(), e.step_id.clone(), e.checksum.clone()))
            .collect();
        v.sort();
        LedgerState(v)
    }

    /// How many steps are recorded.
    pub fn step_count(&self) -> usize {
        self.0.len()
    }

    /// The last recorded step of each plugin (by step id), by plugin name.
    pub fn last_steps(&self) -> Vec<StepRef> {
        let mut last: BTreeMap<&str, &str> = BTreeMap::new();
        for (plugin, step, _) in &self.0 {
            last.insert(plugin, step);
        }
        last.into_iter().map(|(p, s)| StepRef::new(p, s)).collect()
    }
}

/// One tenant as read: its ledger state and its fingerprint (`None`: the schema is
/// registered but missing from the database).
#[derive(Debug, Clone)]
pub struct Member {
    /// The tenant.
    pub schema: SchemaName,
    /// Its ledger state.
    pub ledger: LedgerState,
    /// Its catalog fingerprint.
    pub fingerprint: Option<Fingerprint>,
}

/// The tenants at one ledger state, compared with one of them.
#[derive(Debug, Clone)]
pub struct Cohort {
    /// The ledger state they share.
    pub ledger: LedgerState,
    /// The tenant the others are compared with, and its fingerprint.
    pub baseline: (SchemaName, Fingerprint),
    /// How the baseline was chosen.
    pub basis: Basis,
    /// Tenants with the baseline's fingerprint (the baseline among them).
    pub matching: Vec<SchemaName>,
    /// Tenants with another fingerprint.
    pub differing: Vec<(SchemaName, Fingerprint)>,
    /// Registered tenants whose schema does not exist.
    pub missing: Vec<SchemaName>,
}

/// Why a cohort's baseline is the tenant it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Basis {
    /// Named with `--reference`.
    Reference,
    /// Its fingerprint is the most common one at this ledger state.
    Majority,
    /// Two or more fingerprints are equally common; this one's first tenant comes first by
    /// name.
    Tie,
}

/// The whole comparison.
#[derive(Debug, Clone, Default)]
pub struct Judgement {
    /// One per ledger state compared, by ledger state.
    pub cohorts: Vec<Cohort>,
    /// With a reference: tenants at another ledger state than the reference's.
    pub not_compared: Vec<SchemaName>,
    /// Ledger states where every tenant's schema is missing.
    pub missing_only: Vec<SchemaName>,
}

impl Judgement {
    /// Tenants compared and found to differ, or missing.
    pub fn problem_count(&self) -> usize {
        self.missing_only.len()
            + self
                .cohorts
                .iter()
                .map(|c| c.differing.len() + c.missing.len())
                .sum::<usize>()
    }
}

/// Groups `members` by ledger state and compares each group with its baseline: the
/// `reference` tenant when given (which must be among `members` with an existing schema),
/// else the most common fingerprint of the group.
pub fn judge(members: Vec<Member>, reference: Option<&SchemaName>) -> Result<Judgement, String> {
    let reference = match reference {
        None => None,
        Some(r) => {
            let m = members.iter().find(|m| m.schema == *r).ok_or_else(|| {
                format!("reference tenant `{r}` is not registered (see `wasmig tenant list`)")
            })?;
            let fp = m.fingerprint.clone().ok_or_else(|| {
                format!("reference tenant `{r}` is registered but its schema does not exist; name another with --reference")
            })?;
            Some((m.schema.clone(), m.ledger.clone(), fp))
        }
    };
    let mut by_state: BTreeMap<LedgerState, Vec<Member>> = BTreeMap::new();
    for m in members {
        by_state.entry(m.ledger.clone()).or_default().push(m);
    }
    let mut out = Judgement::default();
    for (state, mut group) in by_state {
        group.sort_by(|a, b| a.schema.as_str().cmp(b.schema.as_str()));
        let (baseline, basis) = match &reference {
            Some((r, rstate, fp)) if *rstate == state => {
                ((r.clone(), fp.clone()), Basis::Reference)
            }
            Some(_) => {
                out.not_compared.extend(group.into_iter().map(|m| m.schema));
                continue;
            }
            None => match most_common(&group) {
                Some(found) => found,
                None => {
                    out.missing_only.extend(group.into_iter().map(|m| m.schema));
                    continue;
                }
            },
        };
        let mut cohort = Cohort {
            ledger: state,
            baseline,
            basis,
            matching: vec![],
            differing: vec![],
            missing: vec![],
        };
        for m in group {
            match m.fingerprint {
                None => cohort.missing.push(m.schema),
                Some(fp) if fp.hash == cohort.baseline.1.hash => cohort.matching.push(m.schema),
                Some(fp) => cohort.differing.push((m.schema, fp)),
            }
        }
        out.cohorts.push(cohort);
    }
    out.not_compared.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    Ok(out)
}

/// The first tenant (by name) of the most common fingerprint in `group` (sorted by name),
/// and whether that fingerprint is strictly the most common. `None` when no schema exists.
fn most_common(group: &[Member]) -> Option<((SchemaName, Fingerprint), Basis)> {
    // Fingerprint hash -> (count, first tenant), in order of first appearance.
    let mut counts: Vec<(&str, usize, &Member)> = vec![];
    let mut at: HashMap<&str, usize> = HashMap::new();
    for m in group {
        let Some(fp) = &m.fingerprint else { continue };
        match at.get(fp.hash.as_str()) {
            Some(&i) => counts[i].1 += 1,
            None => {
                at.insert(&fp.hash, counts.len());
                counts.push((&fp.hash, 1, m));
            }
        }
    }
    let top = counts.iter().map(|c| c.1).max()?;
    let mut tops = counts.iter().filter(|c| c.1 == top);
    let first = tops.next()?;
    let basis = if tops.next().is_some() {
        Basis::Tie
    } else {
        Basis::Majority
    };
    let fp = first.2.fingerprint.clone()?;
    Some(((first.2.schema.clone(), fp), basis))
}

/// How one object of a tenant differs from the baseline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Only the tenant has it.
    Extra,
    /// Only the baseline has it.
    Missing,
    /// Both have it, defined differently; the baseline's definition.
    Changed(String),
}

/// One difference between a tenant and its baseline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    /// What differs.
    pub change: Change,
    /// `column`, `index`, ...
    pub kind: String,
    /// The object's name.
    pub name: String,
    /// The tenant's definition (the baseline's for [`Change::Missing`]).
    pub definition: String,
}

/// What `tenant` has that `baseline` has not, and the other way round, object by object,
/// in kind and name order.
pub fn differences(baseline: &[CatalogObject], tenant: &[CatalogObject]) -> Vec<Difference> {
    type Defs<'a> = BTreeMap<(&'a str, &'a str), Vec<&'a str>>;
    fn index(objects: &[CatalogObject]) -> Defs<'_> {
        let mut m: Defs<'_> = BTreeMap::new();
        for o in objects {
            m.entry((&o.kind, &o.name)).or_default().push(&o.definition);
        }
        for v in m.values_mut() {
            v.sort_unstable();
        }
        m
    }
    let (b, t) = (index(baseline), index(tenant));
    let mut keys: Vec<_> = b.keys().chain(t.keys()).copied().collect();
    keys.sort_unstable();
    keys.dedup();
    let mut out = vec![];
    let diff = |change, (kind, name): (&str, &str), def: &str| Difference {
        change,
        kind: kind.to_owned(),
        name: name.to_owned(),
        definition: def.to_owned(),
    };
    for key in keys {
        let (bd, td) = (
            b.get(&key).map_or(&[][..], Vec::as_slice),
            t.get(&key).map_or(&[][..], Vec::as_slice),
        );
        if bd == td {
            continue;
        }
        if let ([was], [now]) = (bd, td) {
            out.push(diff(Change::Changed((*was).to_owned()), key, now));
            continue;
        }
        out.extend(
            td.iter()
                .filter(|d| !bd.contains(d))
                .map(|d| diff(Change::Extra, key, d)),
        );
        out.extend(
            bd.iter()
                .filter(|d| !td.contains(d))
                .map(|d| diff(Change::Missing, key, d)),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp(h: &str) -> Option<Fingerprint> {
        Some(Fingerprint {
            hash: h.into(),
            objects: 1,
        })
    }

    fn member(schema: &str, steps: usize, f: Option<Fingerprint>) -> Member {
        let entries: Vec<LedgerEntry> = (0..steps)
            .map(|i| LedgerEntry {
                plugin: "p".into(),
                step_id: format!("{i:04}"),
                checksum: "c".into(),
                authentic: true,
                run_id: None,
                artifact_checksum: String::new(),
            })
            .collect();
        Member {
            schema: SchemaName::parse(schema).unwrap(),
            ledger: LedgerState::of(&entries),
            fingerprint: f,
        }
    }

    fn obj(kind: &str, name: &str, def: &str) -> CatalogObject {
        CatalogObject {
            kind: kind.into(),
            name: name.into(),
            definition: def.into(),
        }
    }

    #[test]
    fn the_most_common_structure_at_a_ledger_state_is_the_norm() {
        let j = judge(
            vec![
                member("c", 2, fp("x")),
                member("a", 2, fp("y")),
                member("b", 2, fp("x")),
                member("d", 1, fp("z")),
                member("e", 2, None),
            ],
            None,
        )
        .unwrap();
        assert_eq!(j.cohorts.len(), 2, "one cohort per ledger state");
        let two = j
            .cohorts
            .iter()
            .find(|c| c.ledger.step_count() == 2)
            .unwrap();
        assert_eq!(two.baseline.0.as_str(), "b");
        assert_eq!(two.basis, Basis::Majority);
        assert_eq!(two.differing.len(), 1);
        assert_eq!(two.differing[0].0.as_str(), "a");
        assert_eq!(two.missing[0].as_str(), "e");
        let one = j
            .cohorts
            .iter()
            .find(|c| c.ledger.step_count() == 1)
            .unwrap();
        assert!(one.differing.is_empty(), "a lone tenant is its own norm");
        assert_eq!(j.problem_count(), 2);
    }

    #[test]
    fn a_tie_has_no_norm_and_says_so() {
        let j = judge(vec![member("b", 1, fp("x")), member("a", 1, fp("y"))], None).unwrap();
        assert_eq!(j.cohorts[0].basis, Basis::Tie);
        assert_eq!(j.cohorts[0].baseline.0.as_str(), "a");
        assert_eq!(j.problem_count(), 1);
    }

    #[test]
    fn a_reference_is_compared_only_at_its_own_ledger_state() {
        let r = SchemaName::parse("r").unwrap();
        let j = judge(
            vec![
                member("r", 2, fp("x")),
                member("a", 2, fp("y")),
                member("b", 2, fp("y")),
                member("c", 1, fp("x")),
            ],
            Some(&r),
        )
        .unwrap();
        assert_eq!(j.cohorts.len(), 1);
        assert_eq!(j.cohorts[0].basis, Basis::Reference);
        assert_eq!(
            j.cohorts[0].differing.len(),
            2,
            "the majority does not win over a reference"
        );
        assert_eq!(j.not_compared, vec![SchemaName::parse("c").unwrap()]);
        let missing = SchemaName::parse("zz").unwrap();
        assert!(
            judge(vec![member("r", 1, fp("x"))], Some(&missing))
                .unwrap_err()
                .contains("`zz` is not registered")
        );
    }

    #[test]
    fn differences_name_each_object_and_how_it_differs() {
        let base = vec![
            obj("column", "items.id", "integer not null"),
            obj("column", "items.price", "numeric(10,2)"),
            obj(
                "index",
                "items_pkey",
                "CREATE UNIQUE INDEX items_pkey ON items USING btree (id)",
            ),
        ];
        let tenant = vec![
            obj("column", "items.id", "integer not null"),
            obj("column", "items.note", "text"),
            obj("column", "items.price", "numeric(12,2)"),
        ];
        let d = differences(&base, &tenant);
        assert_eq!(
            d,
            vec![
                Difference {
                    change: Change::Extra,
                    kind: "column".into(),
                    name: "items.note".into(),
                    definition: "text".into()
                },
                Difference {
                    change: Change::Changed("numeric(10,2)".into()),
                    kind: "column".into(),
                    name: "items.price".into(),
                    definition: "numeric(12,2)".into()
                },
                Difference {
                    change: Change::Missing,
                    kind: "index".into(),
                    name: "items_pkey".into(),
                    definition: "CREATE UNIQUE INDEX items_pkey ON items USING btree (id)".into()
                },
            ]
        );
        assert!(differences(&base, &base).is_empty());
    }
}
