//! Linkage keys in the NDB style and the rules that turn them into `person_id`.
//!
//! - **ID1** = HMAC(insurer number, 記号, 番号, birth date, sex), after normalization; a
//!   missing 記号 (後期高齢者医療 cards have none) enters as empty. The branch number (枝番) is
//!   validated but left out: sources often omit it, and within one card family it only
//!   separates dependants who already differ by birth date or sex.
//! - **ID2** = HMAC(kana name, birth date, sex).
//!
//! **Stateless rule** ([`link`], one record at a time, used while streaming): `person_id` is
//! ID1 when the record can form it, else ID2, else a source-system identifier (e.g. a FHIR
//! Patient id without Japanese insurance data). A record with ID2 only therefore gets a
//! different `person_id` from the same person's records that carry ID1.
//!
//! **Resolver** ([`Resolver`], over a whole batch of records): union-find over ID1 and ID2, so
//! a record with ID2 only joins the person of records carrying both, and (with
//! [`Id2Bridging::Bridge`]) two ID1 values sharing one ID2 (an insurance change, a typo in
//! 番号) become one person. Its risk is a false merge of two people with the same kana
//! name, birth date and sex (namesakes born the same day; twins only if given the same name);
//! [`Resolution::ambiguous_id2`] counts the ID2 values that joined several ID1 values so the
//! steward sees it. [`evaluate`] measures either rule against ground truth.

use std::collections::HashMap;
use std::hash::Hash;

use chrono::NaiveDate;
use niji_cdm::Sex;
use serde::Serialize;

use crate::key::{Domain, PseudonymKey};
use crate::normalize;
use crate::{PseudoError, Result};

/// The direct identifiers of one source record, as found (not yet normalized).
#[derive(Debug, Clone, Default)]
pub struct Identifiers<'a> {
    /// 保険者番号.
    pub insurer_number: Option<&'a str>,
    /// 記号.
    pub kigo: Option<&'a str>,
    /// 番号.
    pub bango: Option<&'a str>,
    /// 枝番.
    pub branch: Option<&'a str>,
    /// Name in kana.
    pub kana_name: Option<&'a str>,
    /// Exact birth date.
    pub birth_date: Option<NaiveDate>,
    /// Sex.
    pub sex: Option<Sex>,
    /// (system, value) of a source-system identifier, the fallback key.
    pub source_id: Option<(&'a str, &'a str)>,
}

/// Which key decided `person_id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LinkageBasis {
    /// ID1 only could be formed.
    Id1,
    /// ID2 only could be formed.
    Id2,
    /// Both were formed; person_id is ID1.
    Id1AndId2,
    /// Neither: a source-system identifier.
    SourceId,
}

impl LinkageBasis {
    /// The value stored in `person.linkage_basis`.
    pub fn as_str(self) -> &'static str {
        match self {
            LinkageBasis::Id1 => "id1",
            LinkageBasis::Id2 => "id2",
            LinkageBasis::Id1AndId2 => "id1+id2",
            LinkageBasis::SourceId => "source_id",
        }
    }
}

/// The result of linking one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonLink {
    /// The pseudonym that becomes `person_id`.
    pub person_id: String,
    /// Which key decided it.
    pub basis: LinkageBasis,
    /// ID1 pseudonym when formed.
    pub id1: Option<String>,
    /// ID2 pseudonym when formed.
    pub id2: Option<String>,
}

fn id1(key: &PseudonymKey, ids: &Identifiers<'_>, birth: &str, sex: &str) -> Result<Option<String>> {
    let (Some(ins), Some(bango)) = (ids.insurer_number, ids.bango) else {
        return Ok(None);
    };
    let ins = normalize::insurer_number(ins)?;
    // 後期高齢者医療 cards (and some 国保 cards) have no 記号: it enters ID1 as empty, as in the NDB.
    let kigo = match ids.kigo.map(normalize::kana).filter(|k| !k.is_empty()) {
        Some(k) => normalize::card_symbol_folded("kigo", &k)?,
        None => String::new(),
    };
    let bango = normalize::card_symbol("bango", bango)?;
    Ok(Some(key.pseudonym(Domain::PersonId1, &[&ins, &kigo, &bango, birth, sex])))
}

fn id2(key: &PseudonymKey, ids: &Identifiers<'_>, birth: &str, sex: &str) -> Result<Option<String>> {
    let Some(raw) = ids.kana_name else { return Ok(None) };
    // A kana field holding only blanks or separators is absent, not malformed.
    let k = normalize::kana(raw);
    if k.is_empty() {
        return Ok(None);
    }
    let k = normalize::kana_name_folded(k)?;
    Ok(Some(key.pseudonym(Domain::PersonId2, &[&k, birth, sex])))
}

/// Link one record: validate and normalize its identifiers, form ID1 and ID2, apply the rule.
///
/// A malformed field is an error naming the field; it is never hashed into a fake person.
pub fn link(key: &PseudonymKey, ids: &Identifiers<'_>) -> Result<PersonLink> {
    normalize::branch(ids.branch)?;
    let demo = match (ids.birth_date, ids.sex) {
        (Some(b), Some(s)) => Some((b.format("%Y%m%d").to_string(), s.code())),
        _ => None,
    };
    let (id1, id2) = match &demo {
        Some((birth, sex)) => (id1(key, ids, birth, sex)?, id2(key, ids, birth, sex)?),
        None => (None, None),
    };
    let (person_id, basis) = match (&id1, &id2) {
        (Some(a), Some(_)) => (a.clone(), LinkageBasis::Id1AndId2),
        (Some(a), None) => (a.clone(), LinkageBasis::Id1),
        (None, Some(b)) => (b.clone(), LinkageBasis::Id2),
        (None, None) => match ids.source_id {
            Some((system, value)) if !value.trim().is_empty() => {
                (key.pseudonym(Domain::PersonSource, &[system, value.trim()]), LinkageBasis::SourceId)
            }
            _ => return Err(PseudoError::NoLinkageKey),
        },
    };
    Ok(PersonLink { person_id, basis, id1, id2 })
}

/// Identifiers exactly as a source writes them (text), before parsing. [`link_raw`] parses
/// birth date and sex with [`normalize::birth_date`] and [`normalize::sex`] and then applies
/// [`link`].
#[derive(Debug, Clone, Copy, Default)]
pub struct RawIdentifiers<'a> {
    /// 保険者番号.
    pub insurer_number: Option<&'a str>,
    /// 記号.
    pub kigo: Option<&'a str>,
    /// 番号.
    pub bango: Option<&'a str>,
    /// 枝番.
    pub branch: Option<&'a str>,
    /// Name in kana.
    pub kana_name: Option<&'a str>,
    /// Birth date as written (`YYYYMMDD`, `YYYY-MM-DD`, `GYYMMDD`).
    pub birth_date: Option<&'a str>,
    /// Sex code as written (`1`/`2`, `male`/`female`, `M`/`F`).
    pub sex: Option<&'a str>,
    /// (system, value) of a source-system identifier.
    pub source_id: Option<(&'a str, &'a str)>,
}

fn present(s: Option<&str>) -> Option<&str> {
    s.filter(|v| !v.trim().is_empty())
}

impl<'a> RawIdentifiers<'a> {
    /// Parse into [`Identifiers`]; blank fields count as absent, malformed ones are errors
    /// naming the field. `today` bounds birth dates (a birth date in the future is malformed).
    pub fn parse(&self, today: Option<NaiveDate>) -> Result<Identifiers<'a>> {
        let birth_date = present(self.birth_date).map(|b| normalize::birth_date(b, today)).transpose()?;
        let sex = present(self.sex).map(normalize::sex).transpose()?;
        Ok(Identifiers {
            insurer_number: present(self.insurer_number),
            kigo: present(self.kigo),
            bango: present(self.bango),
            branch: present(self.branch),
            kana_name: present(self.kana_name),
            birth_date,
            sex,
            source_id: self.source_id,
        })
    }
}

/// Check a record's identifiers as [`link`] would, without needing the pipeline key: `Ok`
/// when a linkage key can be formed, else the error (field and reason) it would quarantine with.
pub fn validate(ids: &Identifiers<'_>) -> Result<()> {
    static THROWAWAY: std::sync::LazyLock<Option<PseudonymKey>> =
        std::sync::LazyLock::new(|| PseudonymKey::from_bytes(b"niji/validation-only/not-a-secret").ok());
    match THROWAWAY.as_ref() {
        Some(k) => link(k, ids).map(|_| ()),
        None => Ok(()),
    }
}

/// [`link`] over identifiers as written by a source.
pub fn link_raw(key: &PseudonymKey, raw: &RawIdentifiers<'_>, today: Option<NaiveDate>) -> Result<PersonLink> {
    link(key, &raw.parse(today)?)
}

/// How the [`Resolver`] uses an ID2 shared by records of different ID1 values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Id2Bridging {
    /// ID2 joins records without ID1 to the one ID1 person carrying that ID2; an ID2 seen
    /// with two or more ID1 values joins nothing (ambiguous). Never merges two ID1 values.
    #[default]
    Strict,
    /// ID2 joins everything that carries it, so two ID1 values sharing an ID2 (insurance
    /// change, typo in 番号) become one person. Higher recall; false merges of namesakes
    /// born the same day with the same sex.
    Bridge,
}

/// Batch person resolution: union-find over ID1 and ID2 pseudonyms of many records.
///
/// Add every record's [`PersonLink`] (or `None` for a record that could not be linked), then
/// [`Resolver::resolve`]. The chosen `person_id` of a group does not depend on record order:
/// its smallest ID1, else its smallest ID2, else its source id.
#[derive(Debug, Default)]
pub struct Resolver {
    bridging: Id2Bridging,
    id1: Vec<Option<u32>>,
    id2: Vec<Option<u32>>,
    person: Vec<Option<String>>,
    id1_names: Interner,
    id2_names: Interner,
}

#[derive(Debug, Default)]
struct Interner {
    ids: HashMap<String, u32>,
    names: Vec<String>,
}

impl Interner {
    fn get(&mut self, s: &str) -> u32 {
        if let Some(&i) = self.ids.get(s) {
            return i;
        }
        let i = u32::try_from(self.names.len()).unwrap_or(u32::MAX);
        self.ids.insert(s.to_owned(), i);
        self.names.push(s.to_owned());
        i
    }
}

/// The outcome of [`Resolver::resolve`].
#[derive(Debug, Clone, Serialize)]
pub struct Resolution {
    /// Per added record, in order: the resolved `person_id` (`None` for unlinked records).
    pub person_ids: Vec<Option<String>>,
    /// Number of distinct persons.
    pub persons: usize,
    /// ID2 values seen with two or more distinct ID1 values (merged under `Bridge`, left
    /// apart under `Strict`).
    pub ambiguous_id2: usize,
}

impl Resolver {
    /// A resolver with the given bridging rule.
    pub fn new(bridging: Id2Bridging) -> Self {
        Self { bridging, ..Self::default() }
    }

    /// Add one record; returns its index.
    pub fn add(&mut self, link: Option<&PersonLink>) -> usize {
        let i = self.person.len();
        match link {
            Some(l) => {
                self.id1.push(l.id1.as_deref().map(|s| self.id1_names.get(s)));
                self.id2.push(l.id2.as_deref().map(|s| self.id2_names.get(s)));
                self.person.push(Some(l.person_id.clone()));
            }
            None => {
                self.id1.push(None);
                self.id2.push(None);
                self.person.push(None);
            }
        }
        i
    }

    /// Resolve all added records into persons.
    pub fn resolve(&self) -> Resolution {
        let n = self.person.len();
        let mut uf = UnionFind::new(n);
        // 1. Same ID1, same person.
        let mut first_id1: HashMap<u32, usize> = HashMap::new();
        for (r, id1) in self.id1.iter().enumerate() {
            if let Some(k) = id1 {
                let f = *first_id1.entry(*k).or_insert(r);
                uf.union(f, r);
            }
        }
        // 2. ID2 groups: which ID1 values does each ID2 meet?
        let mut by_id2: HashMap<u32, (Vec<usize>, Vec<u32>)> = HashMap::new();
        for r in 0..n {
            if let Some(k) = self.id2[r] {
                let e = by_id2.entry(k).or_default();
                e.0.push(r);
                if let Some(a) = self.id1[r]
                    && !e.1.contains(&a)
                {
                    e.1.push(a);
                }
            }
        }
        let mut ambiguous = 0;
        for (records, id1s) in by_id2.values() {
            if id1s.len() >= 2 {
                ambiguous += 1;
            }
            let join: Vec<usize> = if id1s.len() <= 1 || self.bridging == Id2Bridging::Bridge {
                records.clone()
            } else {
                // Ambiguous under Strict: only the ID2-only records form a person together.
                records.iter().copied().filter(|&r| self.id1[r].is_none()).collect()
            };
            for w in join.windows(2) {
                uf.union(w[0], w[1]);
            }
        }
        // 3. A deterministic person_id per group: smallest ID1, else smallest ID2, else source.
        let mut best: HashMap<usize, (u8, &str)> = HashMap::new();
        for r in 0..n {
            let Some(own) = self.person[r].as_deref() else { continue };
            let cand = match (self.id1[r], self.id2[r]) {
                (Some(a), _) => (0u8, self.id1_names.names[a as usize].as_str()),
                (None, Some(b)) => (1, self.id2_names.names[b as usize].as_str()),
                (None, None) => (2, own),
            };
            let root = uf.find(r);
            let e = best.entry(root).or_insert(cand);
            if cand < *e {
                *e = cand;
            }
        }
        let person_ids = (0..n)
            .map(|r| self.person[r].as_ref().and_then(|_| best.get(&uf.find(r)).map(|(_, s)| (*s).to_owned())))
            .collect();
        Resolution { person_ids, persons: best.len(), ambiguous_id2: ambiguous }
    }
}

struct UnionFind {
    parent: Vec<usize>,
}

impl UnionFind {
    fn new(n: usize) -> Self {
        Self { parent: (0..n).collect() }
    }
    fn find(&self, mut x: usize) -> usize {
        while self.parent[x] != x {
            x = self.parent[x];
        }
        x
    }
    fn find_compress(&mut self, x: usize) -> usize {
        let root = self.find(x);
        let mut y = x;
        while self.parent[y] != root {
            let next = self.parent[y];
            self.parent[y] = root;
            y = next;
        }
        root
    }
    fn union(&mut self, a: usize, b: usize) {
        let (ra, rb) = (self.find_compress(a), self.find_compress(b));
        if ra != rb {
            // The smaller index becomes the root: deterministic.
            let (lo, hi) = if ra < rb { (ra, rb) } else { (rb, ra) };
            self.parent[hi] = lo;
        }
    }
}

/// Pairwise linkage quality of predicted clusters against true clusters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LinkageQuality {
    /// Records evaluated.
    pub records: u64,
    /// Distinct true persons.
    pub true_persons: u64,
    /// Distinct predicted persons.
    pub predicted_persons: u64,
    /// Record pairs that truly belong to one person.
    pub true_pairs: u64,
    /// Record pairs predicted to belong to one person.
    pub predicted_pairs: u64,
    /// Pairs both predicted and true.
    pub true_positive_pairs: u64,
    /// true_positive / predicted (1 when nothing was predicted linked).
    pub precision: f64,
    /// true_positive / true (1 when no pair truly links).
    pub recall: f64,
    /// Harmonic mean of precision and recall.
    pub f1: f64,
}

fn pairs(n: u64) -> u64 {
    n * n.saturating_sub(1) / 2
}

/// Pairwise precision, recall and F1 of `(predicted label, true label)` per record, counted
/// from the contingency table (no pair enumeration: O(records)). Give each unlinked record a
/// label of its own so that its missed pairs count against recall.
pub fn evaluate<P: Hash + Eq, T: Hash + Eq>(records: impl IntoIterator<Item = (P, T)>) -> LinkageQuality {
    let mut cells: HashMap<(P, T), u64> = HashMap::new();
    let mut n = 0u64;
    for (p, t) in records {
        *cells.entry((p, t)).or_insert(0) += 1;
        n += 1;
    }
    let mut by_pred: HashMap<&P, u64> = HashMap::new();
    let mut by_true: HashMap<&T, u64> = HashMap::new();
    let mut tp = 0u64;
    for ((p, t), c) in &cells {
        *by_pred.entry(p).or_insert(0) += c;
        *by_true.entry(t).or_insert(0) += c;
        tp += pairs(*c);
    }
    let predicted_pairs: u64 = by_pred.values().map(|&c| pairs(c)).sum();
    let true_pairs: u64 = by_true.values().map(|&c| pairs(c)).sum();
    let ratio = |a: u64, b: u64| if b == 0 { 1.0 } else { a as f64 / b as f64 };
    let (precision, recall) = (ratio(tp, predicted_pairs), ratio(tp, true_pairs));
    let f1 = if precision + recall == 0.0 { 0.0 } else { 2.0 * precision * recall / (precision + recall) };
    LinkageQuality {
        records: n,
        true_persons: by_true.len() as u64,
        predicted_persons: by_pred.len() as u64,
        true_pairs,
        predicted_pairs,
        true_positive_pairs: tp,
        precision,
        recall,
        f1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> PseudonymKey {
        PseudonymKey::from_bytes(&[7; 32]).expect("key")
    }

    fn date(y: i32, m: u32, d: u32) -> Option<NaiveDate> {
        NaiveDate::from_ymd_opt(y, m, d)
    }

    #[test]
    fn equivalent_spellings_link() {
        let a = Identifiers {
            insurer_number: Some("138014"),
            kigo: Some("あいう"),
            bango: Some("１８７"),
            branch: Some("05"),
            kana_name: Some("ヤマダ タロウ"),
            birth_date: date(1950, 3, 1),
            sex: Some(Sex::Male),
            source_id: None,
        };
        let b = Identifiers {
            insurer_number: Some("００１３８０１４"),
            kigo: Some("ｱｲｳ"),
            bango: Some("187"),
            branch: None,
            kana_name: Some("やまだたろう"),
            ..a.clone()
        };
        let (la, lb) = (link(&key(), &a).expect("a"), link(&key(), &b).expect("b"));
        assert_eq!(la, lb);
        assert_eq!(la.basis, LinkageBasis::Id1AndId2);
    }

    #[test]
    fn fallbacks_and_errors() {
        let only_kana = Identifiers {
            kana_name: Some("ヤマダ"),
            birth_date: date(1950, 3, 1),
            sex: Some(Sex::Female),
            ..Default::default()
        };
        assert_eq!(link(&key(), &only_kana).expect("id2").basis, LinkageBasis::Id2);
        let late_elderly =
            Identifiers { insurer_number: Some("39131234"), bango: Some("12345678"), ..only_kana.clone() };
        let l = link(&key(), &late_elderly).expect("no 記号");
        assert_eq!(l.basis, LinkageBasis::Id1AndId2);
        let blank_kigo = Identifiers { kigo: Some(" "), ..late_elderly.clone() };
        assert_eq!(link(&key(), &blank_kigo).expect("blank 記号"), l);
        let src = Identifiers { source_id: Some(("urn:x", "p1")), ..Default::default() };
        assert_eq!(link(&key(), &src).expect("source").basis, LinkageBasis::SourceId);
        assert_eq!(link(&key(), &Identifiers::default()), Err(PseudoError::NoLinkageKey));
        let bad = Identifiers { insurer_number: Some("12x"), kigo: Some("1"), bango: Some("2"), ..only_kana.clone() };
        assert!(matches!(link(&key(), &bad), Err(PseudoError::MalformedIdentifier { field: "insurer_number", .. })));
        let kanji = Identifiers { kana_name: Some("山田"), ..only_kana.clone() };
        assert!(matches!(link(&key(), &kanji), Err(PseudoError::MalformedIdentifier { field: "kana_name", .. })));
        let branch = Identifiers { branch: Some("1x"), ..only_kana };
        assert!(matches!(link(&key(), &branch), Err(PseudoError::MalformedIdentifier { field: "branch", .. })));
    }

    #[test]
    fn raw_identifiers_are_parsed_with_field_errors() {
        let raw = RawIdentifiers {
            insurer_number: Some("06139999"),
            kigo: Some("１２"),
            bango: Some("３４"),
            kana_name: Some("ﾔﾏﾀﾞ ﾊﾅｺ"),
            birth_date: Some("19800229"),
            sex: Some("2"),
            ..Default::default()
        };
        let l = link_raw(&key(), &raw, None).expect("links");
        assert_eq!(l.basis, LinkageBasis::Id1AndId2);
        let bad_date = RawIdentifiers { birth_date: Some("19810229"), ..raw };
        assert_eq!(
            link_raw(&key(), &bad_date, None),
            Err(PseudoError::MalformedIdentifier { field: "birth_date", reason: "impossible calendar date" })
        );
        let bad_sex = RawIdentifiers { sex: Some("7"), ..raw };
        assert_eq!(
            link_raw(&key(), &bad_sex, None),
            Err(PseudoError::MalformedIdentifier { field: "sex", reason: "unknown sex code" })
        );
        let blank = RawIdentifiers { insurer_number: Some(" "), kigo: None, bango: None, ..raw };
        assert_eq!(link_raw(&key(), &blank, None).expect("id2").basis, LinkageBasis::Id2);
    }

    fn pl(id1: Option<&str>, id2: Option<&str>) -> PersonLink {
        let person_id = id1.or(id2).unwrap_or("src").to_owned();
        PersonLink { person_id, basis: LinkageBasis::Id1, id1: id1.map(str::to_owned), id2: id2.map(str::to_owned) }
    }

    #[test]
    fn resolver_joins_id2_only_records_and_handles_ambiguity() {
        let recs = [
            pl(Some("a1"), Some("x")), // 0 person A
            pl(None, Some("x")),       // 1 A by ID2
            pl(Some("a1"), None),      // 2 A by ID1
            pl(Some("b1"), Some("y")), // 3 B
            pl(Some("c1"), Some("y")), // 4 C, shares ID2 with B: ambiguous
            pl(None, Some("y")),       // 5 ID2-only, ambiguous
            pl(None, Some("z")),       // 6 D
        ];
        for (mode, expect_same_bc) in [(Id2Bridging::Strict, false), (Id2Bridging::Bridge, true)] {
            let mut r = Resolver::new(mode);
            for l in &recs {
                r.add(Some(l));
            }
            r.add(None);
            let res = r.resolve();
            let p = &res.person_ids;
            assert_eq!(p[0], p[1]);
            assert_eq!(p[0], p[2]);
            assert_eq!(p[0].as_deref(), Some("a1"));
            assert_eq!(p[3] == p[4], expect_same_bc, "{mode:?}");
            assert_eq!(p[5] == p[3], expect_same_bc, "{mode:?}");
            assert_ne!(p[6], p[0]);
            assert_eq!(p[7], None);
            assert_eq!(res.ambiguous_id2, 1);
            assert_eq!(res.persons, if expect_same_bc { 3 } else { 5 });
        }
    }

    #[test]
    fn resolution_does_not_depend_on_order() {
        let recs = [pl(None, Some("x")), pl(Some("b"), Some("x")), pl(Some("a"), Some("x"))];
        let mut fwd = Resolver::new(Id2Bridging::Bridge);
        let mut rev = Resolver::new(Id2Bridging::Bridge);
        recs.iter().for_each(|l| _ = fwd.add(Some(l)));
        recs.iter().rev().for_each(|l| _ = rev.add(Some(l)));
        assert_eq!(fwd.resolve().person_ids[0].as_deref(), Some("a"));
        assert_eq!(rev.resolve().person_ids[0].as_deref(), Some("a"));
    }

    #[test]
    fn evaluate_counts_pairs_from_the_contingency_table() {
        // truth: {0,1,2} {3,4}; predicted: {0,1} {2,3} {4}
        let pred = [1, 1, 2, 2, 3];
        let truth = ['a', 'a', 'a', 'b', 'b'];
        let q = evaluate(pred.into_iter().zip(truth));
        assert_eq!((q.true_pairs, q.predicted_pairs, q.true_positive_pairs), (4, 2, 1));
        assert!((q.precision - 0.5).abs() < 1e-12);
        assert!((q.recall - 0.25).abs() < 1e-12);
        assert!((q.f1 - 1.0 / 3.0).abs() < 1e-12);
        let perfect = evaluate(truth.into_iter().zip(truth));
        assert_eq!((perfect.precision, perfect.recall), (1.0, 1.0));
    }
}
