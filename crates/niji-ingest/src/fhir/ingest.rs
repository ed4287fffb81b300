//! `niji ingest fhir`: FHIR inputs → CDM tables through the ViewDefinitions in
//! `pipelines/views/*.json`.
//!
//! Two passes over the inputs:
//! 1. Patients: each is linked ([`niji_pseudo::linkage::link`]) to a `person_id` and written
//!    to `person`; an index maps the Patient key (`Patient/id`, Bundle `fullUrl`) and each of
//!    its identifiers (`system|value`) to the person. Keys of supporting resources
//!    (Practitioner, Organization, Encounter, …) are remembered to check references. Memory is
//!    bounded by the number of patients and supporting resources, not by the input size.
//! 2. Everything else: evaluated by the view for its type; the subject is resolved through the
//!    index; rows go to the CDM table. A resource is **loaded** (rows written),
//!    **quarantined** with file, line or entry, field and a reason code, or
//!    **consent-excluded** (see below).
//!
//! Consent ([`ingest_with_consent`]): each Patient's link is decided by the gate, with every
//! linkage key of the link, as the receipt and care readers decide theirs. An excluded Patient
//! writes no row and is counted consent-excluded; it stays in the index, marked, so every
//! resource whose subject resolves to it is consent-excluded too (not `unresolved_subject`).
//! Counts are per record (resource), so records = loaded + quarantined + consent-excluded.

// foldhash: seeded per process like std's SipHash (input ids cannot be chosen to collide
// without the seed) and several times cheaper on the short keys hashed per record here.
use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};
use std::path::{Path, PathBuf};

use chrono::{Datelike, NaiveDate};
use niji_cdm::tables::{
    CONDITION_OCCURRENCE, DEATH, DOCUMENT, DRUG_EXPOSURE, IMMUNIZATION, MEASUREMENT, OBSERVATION, PERSON_TABLE,
    VISIT_OCCURRENCE,
};
use niji_cdm::{Sex, TableDef, Vocabulary};
use niji_pseudo::{Domain, Identifiers, PseudonymKey};
use serde_json::Value;

use super::json::{J, key_eq};
use super::read::{self, Location, Place, Unit};
use super::view::{Cell, Env, View};
use crate::consent::{ConsentDecision, ConsentGate, ExcludeReason};
use crate::report::{IngestReport, InputReport, QuarantineWriter, Quarantined};
use crate::sink::{CdmSink, Value as V};
use crate::{IngestError, Result};

/// The mapping views, as shipped in `pipelines/views/`.
pub const VIEW_SOURCES: &[(&str, &str)] = &[
    ("patient", include_str!("../../../../pipelines/views/patient.json")),
    ("encounter", include_str!("../../../../pipelines/views/encounter.json")),
    ("condition", include_str!("../../../../pipelines/views/condition.json")),
    ("observation", include_str!("../../../../pipelines/views/observation.json")),
    ("medication_request", include_str!("../../../../pipelines/views/medication_request.json")),
    ("medication_dispense", include_str!("../../../../pipelines/views/medication_dispense.json")),
    ("allergy_intolerance", include_str!("../../../../pipelines/views/allergy_intolerance.json")),
    ("immunization", include_str!("../../../../pipelines/views/immunization.json")),
    ("composition", include_str!("../../../../pipelines/views/composition.json")),
];

/// Insurance member identifier system of JP-CLINS (保険者番号:記号:番号:枝番).
pub const INSURANCE_MEMBER_ID: &str = "http://jpfhir.jp/fhir/clins/Idsystem/JP_Insurance_memberID";

/// System used as the linkage fallback for patients without Japanese linkage keys.
pub const SOURCE_ID_SYSTEM: &str = "fhir:Patient";

/// Resource types whose keys are remembered in pass 1 to check references to them.
const SUPPORTING: &[&str] = &[
    "Practitioner",
    "PractitionerRole",
    "Organization",
    "Location",
    "Encounter",
    "Specimen",
    "Medication",
    "ServiceRequest",
    "Device",
];

/// Options of an ingest run.
#[derive(Debug, Clone)]
pub struct FhirIngestOptions {
    /// Input files: NDJSON, Bundles, arrays, single resources.
    pub inputs: Vec<PathBuf>,
    /// Output folder.
    pub out: PathBuf,
    /// Rows per Parquet batch.
    pub batch_rows: usize,
}

/// A resource's view and the rows it produced.
type Evaluated<'m> = (&'m Mapping, Vec<Vec<Cell>>);

/// What is prepared for a record: its view's rows, or the error, or `None` without a view.
type Prepared<'m> = Option<Result<Evaluated<'m>>>;

/// What pass 1 needs of a record, extracted where the record is parsed ([`Run::prepare1`]).
enum Pass1<'m> {
    /// A supporting resource, with its key (`Type/id`, else its `fullUrl`).
    Supporting(Option<String>),
    /// A Patient, with its `id` and its view's rows.
    Patient { id: Option<String>, views: Prepared<'m> },
    /// Anything else (pass 2's).
    Other,
}

/// What pass 2 needs of a record, extracted where the record is parsed ([`Run::prepare2`]):
/// the consuming thread never parses a record again.
struct Pass2<'m> {
    /// `resourceType`: borrowed from the mappings or [`SUPPORTING`] where it is one of theirs
    /// (a copy per record only for other types).
    rt: std::borrow::Cow<'m, str>,
    /// The view's rows (`None` for a Patient, which pass 1 handled, and for a reference-only
    /// resource without a view).
    views: Prepared<'m>,
    /// The contained Encounters the rows refer to by `#id`: their key (`container#id`) and the
    /// Encounter view's rows.
    contained: Vec<(String, Result<Vec<Vec<Cell>>>)>,
    /// Whether a reference in the resource points at nothing in the inputs (a data-quality
    /// warning when the resource loads).
    unresolved_reference: bool,
}

/// The columns of the mapping views that the loader reads: [`Mappings`] resolves each view's
/// output position of every one when the views are compiled, so a row's cells are read by
/// position, not looked up by name per row.
macro_rules! mapping_columns {
    ($($var:ident = $name:literal,)*) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        enum C {
            $($var,)*
        }

        impl C {
            const ALL: &'static [C] = &[$(C::$var,)*];

            /// The column's name in the views.
            fn name(self) -> &'static str {
                match self {
                    $(C::$var => $name,)*
                }
            }
        }
    };
}

mapping_columns! {
    Abatement = "abatement",
    AuthoredOn = "authored_on",
    BirthDate = "birth_date",
    Category = "category",
    ClassCode = "class_code",
    ClinicalStatus = "clinical_status",
    Codes = "codes",
    Criticality = "criticality",
    Custodian = "custodian",
    Date = "date",
    DaysSupply = "days_supply",
    DeceasedDate = "deceased_date",
    DoseNumber = "dose_number",
    Effective = "effective",
    EncounterReference = "encounter_reference",
    End = "end",
    Gender = "gender",
    HasLocalCode = "has_local_code",
    Identifier = "identifier",
    Identifiers = "identifiers",
    InsuranceMemberId = "insurance_member_id",
    Issued = "issued",
    JpClinsLab = "jp_clins_lab",
    KanaName = "kana_name",
    Occurrence = "occurrence",
    Onset = "onset",
    OnsetPeriodStart = "onset_period_start",
    PeriodEnd = "period_end",
    PeriodStart = "period_start",
    PostalCode = "postal_code",
    Prefecture = "prefecture",
    Primary = "primary",
    Quantity = "quantity",
    RangeHigh = "range_high",
    RangeLow = "range_low",
    RecordedDate = "recorded_date",
    ResourceKey = "resource_key",
    ServiceProvider = "service_provider",
    Start = "start",
    Status = "status",
    SubjectIdentifier = "subject_identifier",
    SubjectKey = "subject_key",
    TargetDisease = "target_disease",
    TypeCode = "type_code",
    Unit = "unit",
    ValueBoolean = "value_boolean",
    ValueCode = "value_code",
    ValueInteger = "value_integer",
    ValueNumber = "value_number",
    WhenHandedOver = "when_handed_over",
    WhenPrepared = "when_prepared",
}

/// Where a view has each of [`C`]'s columns: its output position, or `u16::MAX` where the view
/// has no such column (the cell reads as null).
type Positions = [u16; C::ALL.len()];

/// A compiled mapping view and the positions of the columns the loader reads.
#[derive(Debug)]
struct Mapping {
    view: View,
    at: Positions,
}

/// The compiled mapping views.
#[derive(Debug)]
pub struct Mappings {
    views: HashMap<String, Mapping>,
}

impl Mappings {
    /// Compile the shipped views.
    pub fn builtin() -> Result<Self> {
        let mut views = HashMap::new();
        for (name, src) in VIEW_SOURCES {
            let def: Value = serde_json::from_str(src)
                .map_err(|e| IngestError::ViewDefinition(format!("pipelines/views/{name}.json: {e}")))?;
            let view = View::compile(&def)?;
            let mut at = [u16::MAX; C::ALL.len()];
            for (slot, c) in at.iter_mut().zip(C::ALL) {
                if let Some(i) = view.column(c.name()) {
                    *slot = u16::try_from(i).map_err(|_| {
                        IngestError::ViewDefinition(format!("pipelines/views/{name}.json: too many columns"))
                    })?;
                }
            }
            views.insert(view.resource.clone(), Mapping { view, at });
        }
        Ok(Self { views })
    }

    /// The view for a resource type.
    pub fn view(&self, resource_type: &str) -> Option<&View> {
        self.mapping(resource_type).map(|m| &m.view)
    }

    fn mapping(&self, resource_type: &str) -> Option<&Mapping> {
        self.views.get(resource_type)
    }
}

/// A row of a mapping view, its cells addressed by [`C`].
struct Row<'v> {
    at: &'v Positions,
    cells: &'v [Cell],
}

/// A field value the CDM cannot take: quarantine reason with field name.
struct Reject {
    reason: &'static str,
    field: String,
    detail: String,
}

type Rej<T> = std::result::Result<T, Reject>;

fn reject(reason: &'static str, field: &str, detail: impl Into<String>) -> Reject {
    Reject { reason, field: field.to_owned(), detail: detail.into() }
}

impl Row<'_> {
    /// The key of the row's resource: its `resource_key` column, else the entry's `fullUrl`.
    fn record_key<'s>(&'s self, full_url: Option<&'s str>) -> Rej<Option<&'s str>> {
        Ok(self.text(C::ResourceKey)?.or(full_url))
    }

    fn cell(&self, c: C) -> &Cell {
        self.cells.get(usize::from(self.at[c as usize])).unwrap_or(&Cell::Null)
    }

    /// A text column; a value of another kind is a wrong-type rejection.
    fn text(&self, c: C) -> Rej<Option<&str>> {
        match self.cell(c) {
            Cell::Null => Ok(None),
            Cell::Str(s) => Ok(Some(s.as_str()).filter(|s| !s.trim().is_empty())),
            Cell::List(l) => match l.first() {
                None => Ok(None),
                Some(Cell::Str(s)) => Ok(Some(s.as_str())),
                Some(_) => Err(reject("wrong_type", c.name(), "expected text")),
            },
            _ => Err(reject("wrong_type", c.name(), "expected text")),
        }
    }

    /// The texts of a collection column (a text cell: itself), without collecting them.
    fn list(&self, c: C) -> impl Iterator<Item = &str> + Clone {
        let (many, one): (&[Cell], Option<&str>) = match self.cell(c) {
            Cell::List(l) => (l, None),
            Cell::Str(s) => (&[], Some(s)),
            _ => (&[], None),
        };
        many.iter().filter_map(Cell::as_str).chain(one)
    }

    fn number(&self, c: C) -> Rej<Option<f64>> {
        let cell = match self.cell(c) {
            Cell::List(l) => l.first().unwrap_or(&Cell::Null),
            cell => cell,
        };
        match cell {
            Cell::Null => Ok(None),
            Cell::Int(i) => Ok(Some(*i as f64)),
            Cell::Dec(d) if d.is_finite() => Ok(Some(*d)),
            _ => Err(reject("wrong_type", c.name(), "expected a number")),
        }
    }

    fn boolean(&self, c: C) -> Rej<Option<bool>> {
        match self.cell(c) {
            Cell::Null => Ok(None),
            Cell::Bool(b) => Ok(Some(*b)),
            _ => Err(reject("wrong_type", c.name(), "expected a boolean")),
        }
    }

    /// A date column (`YYYY`, `YYYY-MM`, `YYYY-MM-DD`, or a dateTime): partial dates take the
    /// first day of the period.
    fn date(&self, c: C) -> Rej<Option<NaiveDate>> {
        match self.text(c)? {
            None => Ok(None),
            Some(s) => parse_fhir_date(s).map(Some).ok_or_else(|| reject("bad_date", c.name(), "not a FHIR date")),
        }
    }
}

/// Parse a FHIR date or dateTime to its calendar date: the part before any `T` must be
/// `YYYY`, `YYYY-MM` or `YYYY-MM-DD` (ASCII digits); a partial date takes the first day of
/// its period. Byte by byte, without splitting (it runs on several columns of every row).
pub fn parse_fhir_date(s: &str) -> Option<NaiveDate> {
    let b = s.as_bytes();
    let date = &b[..memchr::memchr(b'T', b).unwrap_or(b.len())];
    let num = |x: &[u8]| x.iter().try_fold(0u32, |n, &c| c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0')));
    let y = num(date.get(..4)?)?;
    let (m, d) = match date.len() {
        4 => (1, 1),
        7 if date[4] == b'-' => (num(&date[5..7])?, 1),
        10 if date[4] == b'-' && date[7] == b'-' => (num(&date[5..7])?, num(&date[8..10])?),
        _ => return None,
    };
    NaiveDate::from_ymd_opt(i32::try_from(y).ok()?, m, d)
}

/// Pick the preferred `system|code` by vocabulary priority (the first code of the first
/// vocabulary in `prefer` that has one), else the first code of a known vocabulary, else the
/// first code. One pass, each system looked up once: a code's rank is its vocabulary's
/// position in `prefer`, then known, then unknown, and the first code of the lowest rank wins.
fn pick_code<'a>(codes: impl IntoIterator<Item = &'a str>, prefer: &[Vocabulary]) -> Option<(&'a str, Vocabulary)> {
    let mut best: Option<(usize, &str, Vocabulary)> = None;
    for c in codes {
        let Some((sys, code)) = c.rsplit_once('|').filter(|(_, code)| !code.is_empty()) else { continue };
        let v = Vocabulary::from_system(sys);
        let rank = prefer.iter().position(|p| *p == v).unwrap_or(prefer.len() + usize::from(v == Vocabulary::Other));
        if best.is_none_or(|(r, _, _)| rank < r) {
            best = Some((rank, code, v));
            if rank == 0 {
                break;
            }
        }
    }
    best.map(|(_, code, v)| (code, v))
}

/// A JLAC10 analyte code of infection serology or microbiology (5E, 5F, 6x).
fn is_infection_code(code: &str, vocab: Vocabulary) -> bool {
    matches!(vocab, Vocabulary::Jlac10 | Vocabulary::Jlac11)
        && (code.starts_with("5E") || code.starts_with("5F") || code.starts_with('6'))
}

struct Person {
    person_id: String,
    /// Linkage strength: 2 = ID1/ID2, 1 = source id. A stronger link wins an identifier.
    rank: u8,
    /// Set when consent excludes the person: its resources are consent-excluded.
    excluded: Option<ExcludeReason>,
}

/// The records pass 1 handled, per input, sorted: pass 2 asks about every record, and most
/// inputs (all but the Patients') have none, which an empty list answers at once where a set
/// of (input, line) pairs hashed every record.
struct Handled(Vec<Vec<u64>>);

impl Handled {
    fn new(mut per_input: Vec<Vec<u64>>) -> Handled {
        for v in &mut per_input {
            v.sort_unstable();
            v.dedup();
        }
        Handled(per_input)
    }

    fn contains(&self, input: usize, at: u64) -> bool {
        self.0.get(input).is_some_and(|v| v.binary_search(&at).is_ok())
    }

    fn len(&self) -> usize {
        self.0.iter().map(Vec::len).sum()
    }
}

/// What became of a record that was not quarantined.
enum Outcome {
    Loaded,
    Excluded(ExcludeReason),
}

/// State shared by both passes.
struct Run<'k> {
    key: &'k PseudonymKey,
    consent: Option<&'k ConsentGate>,
    maps: &'k Mappings,
    sink: CdmSink,
    quarantine: QuarantineWriter,
    report: IngestReport,
    /// Patient key and `system|value` identifiers → person.
    persons: HashMap<String, std::rc::Rc<Person>>,
    /// Keys of supporting resources seen in the inputs.
    known: HashSet<String>,
    /// Records handled in pass 1, per input: their line or entry numbers (sorted after pass 1,
    /// [`Handled`]).
    handled: Vec<Vec<u64>>,
    /// Visit ids already written (contained Encounters are repeated in every container).
    visits: HashSet<String>,
}

#[derive(Default)]
struct Counts {
    loaded: u64,
    quarantined: u64,
    consent_excluded: u64,
    records: u64,
}

fn pos(loc: &Location) -> u64 {
    loc.line.or(loc.entry).unwrap_or(0)
}

impl<'k> Run<'k> {
    fn quarantine(
        &mut self,
        file: &str,
        loc: &Location,
        rt: Option<&str>,
        field: Option<&str>,
        reason: &str,
        detail: &str,
    ) -> Result<()> {
        self.report.count_reason(reason);
        self.quarantine.push(&Quarantined {
            file: file.to_owned(),
            line: loc.line,
            entry: loc.entry,
            record_type: rt.map(str::to_owned),
            field: field.map(str::to_owned),
            reason: reason.to_owned(),
            detail: detail.to_owned(),
        })
    }

    fn record_id(&self, key: &str) -> String {
        self.key.pseudonym(Domain::Record, &["fhir", key])
    }

    /// The rows of the view for `rt`, the resource's `resourceType`.
    fn eval<'m>(maps: &'m Mappings, res: J<'_>, rt: &str, unit: &Unit<'_>) -> Prepared<'m> {
        maps.mapping(rt).map(|m| Self::eval_mapping(m, res, unit))
    }

    /// The rows of the mapping's view.
    fn eval_mapping<'m>(m: &'m Mapping, res: J<'_>, unit: &Unit<'_>) -> Result<Evaluated<'m>> {
        let env = Env { aliases: unit.aliases, resource_key: unit.full_url };
        m.view.eval(res, &env).map(|rows| (m, rows))
    }

    /// What pass 1 needs of a record (run where it is parsed, maybe on the reading thread):
    /// a supporting resource's key, or a Patient's id and view.
    fn prepare1<'m>(maps: &'m Mappings, unit: &Unit<'_>) -> Pass1<'m> {
        let Ok(res) = unit.resource else { return Pass1::Other };
        let rt = unit.resource_type;
        if SUPPORTING.contains(&rt) {
            return Pass1::Supporting(read::resource_key(res, unit.full_url));
        }
        if rt != "Patient" {
            return Pass1::Other;
        }
        Pass1::Patient { id: res.str_of("id").map(str::to_owned), views: Self::eval(maps, res, rt, unit) }
    }

    /// What pass 2 needs of a record (run where it is parsed): its type, its view's rows, the
    /// contained Encounters they refer to, and the reference check against `known` (the keys
    /// pass 1 collected).
    fn prepare2<'m>(maps: &'m Mappings, known: &HashSet<String>, unit: &Unit<'_>) -> Pass2<'m> {
        use std::borrow::Cow;
        let mut p = Pass2 { rt: Cow::Borrowed(""), views: None, contained: Vec::new(), unresolved_reference: false };
        let Ok(res) = unit.resource else { return p };
        let rt = unit.resource_type;
        let mapping = maps.mapping(rt);
        p.rt = match mapping {
            Some(m) => Cow::Borrowed(m.view.resource.as_str()),
            None => {
                SUPPORTING.iter().find(|t| **t == rt).map_or_else(|| Cow::Owned(rt.to_owned()), |t| Cow::Borrowed(*t))
            }
        };
        if rt == "Patient" || reference_only(maps, rt) {
            return p;
        }
        p.views = mapping.map(|m| Self::eval_mapping(m, res, unit));
        if let Some(Ok((m, rows))) = &p.views {
            p.contained = contained_visits(maps, &m.at, rows, res, unit);
        }
        p.unresolved_reference = unresolved_reference(known, res, unit);
        p
    }

    /// Pass 1 on one record: Patients → person rows and the index; supporting keys.
    /// `pre` is [`Run::prepare1`] of the record, or why it is not a resource.
    fn pass1(
        &mut self,
        idx: usize,
        file: &str,
        place: Place<'_>,
        c: &mut Counts,
        pre: std::result::Result<&mut Pass1<'k>, read::BadRecord>,
    ) -> Result<()> {
        let (id, evaluated) = match pre {
            Err(_) | Ok(Pass1::Other) => return Ok(()),
            Ok(Pass1::Supporting(key)) => {
                if let Some(k) = key.take() {
                    self.known.insert(k);
                }
                if let Some(u) = place.full_url {
                    self.known.insert(u.to_owned());
                }
                return Ok(());
            }
            Ok(Pass1::Patient { id, views }) => (id.as_deref(), &*views),
        };
        self.handled[idx].push(pos(place.loc));
        c.records += 1;
        let outcome = match evaluated {
            Some(Ok((m, rows))) => match rows.first() {
                Some(cells) => self.patient(&Row { at: &m.at, cells }, id, place.full_url),
                None => Err(reject("out_of_scope", "resourceType", "the patient view selected no row")),
            },
            Some(Err(e)) => Err(reject("view_error", "", e.to_string())),
            None => Err(reject("unmapped_resource_type", "resourceType", "no view for this resource type")),
        };
        match outcome {
            Ok(Outcome::Loaded) => c.loaded += 1,
            Ok(Outcome::Excluded(reason)) => {
                c.consent_excluded += 1;
                self.report.warn(&format!("consent_excluded_fhir_{}", reason.code()));
            }
            Err(r) => {
                c.quarantined += 1;
                let field = (!r.field.is_empty()).then_some(r.field.as_str());
                self.quarantine(file, place.loc, Some("Patient"), field, r.reason, &r.detail)?;
            }
        }
        Ok(())
    }

    /// Link a Patient, decide its consent, write its rows unless excluded, and index it.
    fn patient(&mut self, row: &Row<'_>, id: Option<&str>, full_url: Option<&str>) -> Rej<Outcome> {
        let birth = match row.text(C::BirthDate)? {
            None => None,
            Some(b) => Some(
                niji_pseudo::normalize::birth_date(b, None)
                    .map_err(|_| reject("bad_date", "birthDate", "not a valid birth date"))?,
            ),
        };
        let sex = match row.text(C::Gender)? {
            None => None,
            Some(g) => {
                Some(Sex::parse(g).map_err(|_| reject("bad_code", "gender", "not a FHIR administrative gender"))?)
            }
        };
        let ins = row.text(C::InsuranceMemberId)?;
        let parts: Vec<&str> = ins.map(|s| s.split(':').collect()).unwrap_or_default();
        if ins.is_some() && !(3..=4).contains(&parts.len()) {
            return Err(reject(
                "malformed_identifier",
                "identifier[JP_Insurance_memberID].value",
                "expected 保険者番号:記号:番号[:枝番]",
            ));
        }
        let id = id.or(full_url).unwrap_or_default();
        let ids = Identifiers {
            insurer_number: parts.first().copied(),
            kigo: parts.get(1).copied(),
            bango: parts.get(2).copied(),
            branch: parts.get(3).copied().filter(|b| !b.is_empty()),
            kana_name: row.text(C::KanaName)?,
            birth_date: birth,
            sex,
            source_id: Some((SOURCE_ID_SYSTEM, id)),
        };
        let link = niji_pseudo::linkage::link(self.key, &ids).map_err(|e| match e {
            niji_pseudo::PseudoError::MalformedIdentifier { field, reason } => {
                reject("malformed_identifier", field, reason.to_owned())
            }
            _ => reject("no_linkage_key", "identifier", "no linkage key could be formed"),
        })?;
        let excluded = match self.consent.map(|g| g.decide(&link)) {
            Some(ConsentDecision::Exclude(reason)) => Some(reason),
            _ => None,
        };
        if excluded.is_none() {
            if link.basis == niji_pseudo::LinkageBasis::SourceId {
                self.report.warn("linkage_source_id");
            }
            let prefecture =
                row.text(C::Prefecture)?.and_then(niji_pseudo::generalize::prefecture_code).or_else(|| {
                    row.text(C::PostalCode).ok().flatten().and_then(niji_pseudo::generalize::prefecture_from_postcode)
                });
            let area = row.text(C::PostalCode)?.and_then(niji_pseudo::generalize::secondary_medical_area);
            // Every field is checked before the first row is written: a quarantined Patient
            // leaves no row behind.
            let death = row.date(C::DeceasedDate)?;
            let person = V::from(link.person_id.as_str());
            let out = [
                person.clone(),
                V::from(sex.unwrap_or(Sex::Unknown).code()),
                birth.map(|b| V::I32(b.year())).unwrap_or(V::Null),
                birth.map(|b| V::I32(b.month() as i32)).unwrap_or(V::Null),
                prefecture.map(V::from).unwrap_or(V::Null),
                area.map(V::from).unwrap_or(V::Null),
                V::from(link.basis.as_str()),
                V::from("fhir"),
            ];
            self.push(&PERSON_TABLE, &out)?;
            if let Some(d) = death {
                self.push(&DEATH, &[person, V::Date(d), V::Null, V::from("fhir")])?;
            }
        }
        let rank = if link.basis == niji_pseudo::LinkageBasis::SourceId { 1 } else { 2 };
        let p = std::rc::Rc::new(Person { person_id: link.person_id, rank, excluded });
        if let Some(k) = row.text(C::ResourceKey)? {
            self.persons.insert(k.to_owned(), p.clone());
        }
        if let Some(u) = full_url {
            self.persons.insert(u.to_owned(), p.clone());
        }
        for ident in row.list(C::Identifiers) {
            // A logical reference by identifier goes to the best-linked Patient carrying it.
            match self.persons.get(ident) {
                Some(old) if old.rank >= rank => {}
                _ => {
                    self.persons.insert(ident.to_owned(), p.clone());
                }
            }
        }
        Ok(excluded.map_or(Outcome::Loaded, Outcome::Excluded))
    }

    fn push(&mut self, table: &'static TableDef, row: &[V<'_>]) -> Rej<()> {
        self.sink.push(table, row).map_err(|e| reject("row_shape", table.name, e.to_string()))
    }

    /// The person a row's subject resolves to (shared: its id is borrowed into the rows).
    fn subject(&self, row: &Row<'_>, unit: Place<'_>) -> Rej<std::rc::Rc<Person>> {
        self.resolve_subject(row, unit).cloned()
    }

    /// The consent exclusion of the Patient a row's subject resolves to, if any.
    fn subject_excluded(&self, row: &Row<'_>, unit: Place<'_>) -> Option<ExcludeReason> {
        self.resolve_subject(row, unit).ok().and_then(|p| p.excluded)
    }

    fn resolve_subject(&self, row: &Row<'_>, unit: Place<'_>) -> Rej<&std::rc::Rc<Person>> {
        let doc = unit.document_subject.map(|r| reference_key(r, unit.aliases));
        let by_key = row.text(C::SubjectKey)?.or(doc.as_deref());
        let by_ident = row.text(C::SubjectIdentifier)?;
        if by_key.is_none() && by_ident.is_none() {
            return Err(reject("missing_subject", "subject", "no patient reference"));
        }
        let hit = by_key.and_then(|k| self.persons.get(k)).or_else(|| by_ident.and_then(|i| self.persons.get(i)));
        hit.ok_or_else(|| {
            reject("unresolved_subject", "subject", "the patient reference matches no Patient in the inputs")
        })
    }

    /// Resolve an encounter reference to a visit id; a contained Encounter (evaluated by
    /// [`contained_visits`] where the record was parsed) becomes a visit, its row left in
    /// `pending` for [`Run::map_row`] to write with the row that refers to it.
    fn visit(
        &self,
        contained: &[(String, Result<Vec<Vec<Cell>>>)],
        container_key: &str,
        reference: Option<&str>,
        person: &str,
        unit: Place<'_>,
        pending: &mut Option<(String, Vec<V<'static>>)>,
    ) -> Rej<Option<String>> {
        let Some(r) = reference else { return Ok(None) };
        if let Some(local) = r.strip_prefix('#') {
            let ckey = contained_key(container_key, local);
            let Some((_, rows)) = contained.iter().find(|(k, _)| *k == ckey) else { return Ok(None) };
            let maps = self.maps;
            let Some(m) = maps.mapping("Encounter") else { return Ok(None) };
            let rows = rows.as_ref().map_err(|e| reject("view_error", "contained", e.to_string()))?;
            let Some(cells) = rows.first() else { return Ok(None) };
            let erow = Row { at: &m.at, cells };
            let vid = match erow.text(C::Identifier)? {
                Some(ident) => self.key.pseudonym(Domain::Record, &["fhir-encounter-identifier", ident]),
                None => self.record_id(&ckey),
            };
            if let Some(visit) = self.new_visit(&erow, &vid, person)? {
                *pending = Some((vid.clone(), visit));
            }
            return Ok(Some(vid));
        }
        Ok(Some(self.record_id(&reference_key(r, unit.aliases))))
    }

    /// The `visit_occurrence` row of an Encounter's row, every field checked; `None` when the
    /// visit id was written before.
    fn new_visit(&self, row: &Row<'_>, vid: &str, person: &str) -> Rej<Option<Vec<V<'static>>>> {
        if self.visits.contains(vid) {
            return Ok(None);
        }
        Ok(Some(vec![
            V::from(vid.to_owned()),
            V::from(person.to_owned()),
            V::I32(0),
            row.text(C::ClassCode)?.map(|c| V::from(c.to_owned())).unwrap_or(V::Null),
            row.date(C::Start)?.map(V::Date).unwrap_or(V::Null),
            row.date(C::End)?.map(V::Date).unwrap_or(V::Null),
            row.text(C::ServiceProvider)?
                .map(|f| V::from(self.key.pseudonym(Domain::Facility, &[f])))
                .unwrap_or(V::Null),
            V::from("fhir"),
        ]))
    }

    /// Write a visit row of [`Run::new_visit`]; its id counts as written from now on.
    fn write_visit(&mut self, vid: String, visit: &[V<'_>]) -> Rej<()> {
        self.visits.insert(vid);
        self.push(&VISIT_OCCURRENCE, visit)
    }

    /// Pass 2 on one record.
    /// `pre` is [`Run::prepare2`] of the record, or why it is not a resource.
    fn pass2(
        &mut self,
        idx: usize,
        file: &str,
        unit: Place<'_>,
        c: &mut Counts,
        handled: &Handled,
        pre: std::result::Result<&mut Pass2<'k>, read::BadRecord>,
    ) -> Result<()> {
        if handled.contains(idx, pos(unit.loc)) {
            return Ok(());
        }
        let pre = match pre {
            Ok(p) => p,
            Err(b) => {
                c.records += 1;
                c.quarantined += 1;
                return self.quarantine(file, unit.loc, None, None, b.reason, &b.detail);
            }
        };
        let rt = &*pre.rt;
        if rt == "Patient" {
            // Unreachable in practice (pass 1 handles every Patient); count it honestly anyway.
            c.records += 1;
            c.quarantined += 1;
            return self.quarantine(file, unit.loc, Some(rt), None, "duplicate_record", "Patient seen twice");
        }
        c.records += 1;
        if reference_only(self.maps, rt) {
            // Reference-only resources (Practitioner, Organization, …) are consumed by
            // reference resolution and facility pseudonyms; they have no table of their own.
            c.loaded += 1;
            self.report.warn("reference_only_resource");
            return Ok(());
        }
        // The subject is resolved on every row before any row is written: a resource of an
        // excluded person writes nothing (its contained Encounter included).
        let outcome = match &pre.views {
            None => Err(reject("unmapped_resource_type", "resourceType", "no mapping view for this resource type")),
            Some(Err(e)) => Err(reject("view_error", "", e.to_string())),
            Some(Ok((_, rows))) if rows.is_empty() => {
                Err(reject("out_of_scope", "", "the mapping view's where clause excludes this resource"))
            }
            Some(Ok((m, rows))) => {
                let rows: Vec<Row<'_>> = rows.iter().map(|cells| Row { at: &m.at, cells }).collect();
                match rows.iter().find_map(|row| self.subject_excluded(row, unit)) {
                    Some(reason) => Ok(Outcome::Excluded(reason)),
                    None => {
                        let mut r = Ok(Outcome::Loaded);
                        for row in &rows {
                            if let Err(e) = self.map_row(rt, row, &pre.contained, unit) {
                                r = Err(e);
                                break;
                            }
                        }
                        r
                    }
                }
            }
        };
        match outcome {
            Ok(Outcome::Loaded) => {
                c.loaded += 1;
                if pre.unresolved_reference {
                    self.report.warn("unresolved_reference");
                }
            }
            Ok(Outcome::Excluded(reason)) => {
                c.consent_excluded += 1;
                self.report.warn(&format!("consent_excluded_fhir_{}", reason.code()));
            }
            Err(r) => {
                c.quarantined += 1;
                let field = (!r.field.is_empty()).then_some(r.field.as_str());
                self.quarantine(file, unit.loc, Some(rt), field, r.reason, &r.detail)?;
            }
        }
        Ok(())
    }

    fn map_row(
        &mut self,
        rt: &str,
        row: &Row<'_>,
        contained: &[(String, Result<Vec<Vec<Cell>>>)],
        unit: Place<'_>,
    ) -> Rej<()> {
        let person = self.subject(row, unit)?;
        let pid = person.person_id.as_str();
        let Some(key) = row.record_key(unit.full_url)? else {
            return Err(reject("missing_id", "id", "resource has neither id nor fullUrl"));
        };
        let rid = self.record_id(key);
        // An Encounter is a visit: its row is the visit's, keyed by its record id.
        if rt == "Encounter" {
            return match self.new_visit(row, &rid, pid)? {
                Some(visit) => self.write_visit(rid, &visit),
                None => Ok(()),
            };
        }
        let id = V::from(rid);
        let fhir = V::from("fhir");
        let codes = row.list(C::Codes);
        let d = |x: Option<NaiveDate>| x.map(V::Date).unwrap_or(V::Null);
        let f = |x: Option<f64>| x.map(V::F64).unwrap_or(V::Null);
        // A contained Encounter's visit, written below with the row that refers to it.
        let mut pending = None;
        let (table, out): (&'static TableDef, Vec<V<'_>>) = match rt {
            "Condition" => {
                let (code, vocab) = match pick_code(
                    codes.clone(),
                    &[
                        Vocabulary::MedisDisease,
                        Vocabulary::MedisDiseaseExchange,
                        Vocabulary::ReceiptDisease,
                        Vocabulary::Icd10,
                    ],
                ) {
                    Some((c, v)) => (V::from(c), V::from(v.short())),
                    None => (V::Null, V::Null),
                };
                let icd = pick_code(codes, &[Vocabulary::Icd10])
                    .filter(|(_, v)| *v == Vocabulary::Icd10)
                    .map(|(c, _)| V::from(c))
                    .unwrap_or(V::Null);
                let start = row.date(C::Onset)?.or(row.date(C::OnsetPeriodStart)?).or(row.date(C::RecordedDate)?);
                let visit = self.visit(contained, key, row.text(C::EncounterReference)?, pid, unit, &mut pending)?;
                let out = vec![
                    id,
                    V::from(pid),
                    V::I32(0),
                    code,
                    vocab,
                    icd,
                    d(start),
                    d(row.date(C::Abatement)?),
                    row.text(C::ClinicalStatus)?.map(V::from).unwrap_or(V::Null),
                    row.boolean(C::Primary)?.map(V::Bool).unwrap_or(V::Null),
                    V::Null,
                    visit.map(V::from).unwrap_or(V::Null),
                    fhir,
                ];
                (&CONDITION_OCCURRENCE, out)
            }
            "Observation" => {
                let picked = pick_code(codes, &[Vocabulary::Jlac10, Vocabulary::Jlac11, Vocabulary::Loinc]);
                let infection = picked.is_some_and(|(c, v)| is_infection_code(c, v));
                let missing_local_code =
                    row.boolean(C::JpClinsLab)? == Some(true) && row.boolean(C::HasLocalCode)? != Some(true);
                let date = row.date(C::Effective)?.or(row.date(C::Issued)?);
                let value = row.number(C::ValueNumber)?.or(row.number(C::ValueInteger)?);
                let coded =
                    row.text(C::ValueCode)?.map(str::to_owned).or(row.boolean(C::ValueBoolean)?.map(|b| b.to_string()));
                let visit = self.visit(contained, key, row.text(C::EncounterReference)?, pid, unit, &mut pending)?;
                let out = vec![
                    id,
                    V::from(pid),
                    V::I32(0),
                    picked.map(|(c, _)| V::from(c)).unwrap_or(V::Null),
                    picked.map(|(_, v)| V::from(v.short())).unwrap_or(V::Null),
                    d(date),
                    f(value),
                    coded.map(V::from).unwrap_or(V::Null),
                    row.text(C::Unit)?.map(V::from).unwrap_or(V::Null),
                    f(row.number(C::RangeLow)?),
                    f(row.number(C::RangeHigh)?),
                    V::Bool(infection),
                    visit.map(V::from).unwrap_or(V::Null),
                    fhir,
                ];
                if missing_local_code {
                    self.report.warn("missing_local_code");
                }
                (&MEASUREMENT, out)
            }
            "MedicationRequest" | "MedicationDispense" => {
                let picked =
                    pick_code(codes, &[Vocabulary::Yj, Vocabulary::Hot9, Vocabulary::ReceiptDrug, Vocabulary::RxNorm]);
                let (start, end) = if rt == "MedicationRequest" {
                    (row.date(C::Start)?.or(row.date(C::AuthoredOn)?), row.date(C::End)?)
                } else {
                    (row.date(C::WhenHandedOver)?.or(row.date(C::WhenPrepared)?), None)
                };
                let days = row.number(C::DaysSupply)?;
                if days.is_some_and(|x| !(0.0..=3650.0).contains(&x)) {
                    return Err(reject("out_of_range", "days_supply", "days of supply outside 0..3650"));
                }
                let visit = self.visit(contained, key, row.text(C::EncounterReference)?, pid, unit, &mut pending)?;
                let out = vec![
                    id,
                    V::from(pid),
                    V::I32(0),
                    picked.map(|(c, _)| V::from(c)).unwrap_or(V::Null),
                    picked.map(|(_, v)| V::from(v.short())).unwrap_or(V::Null),
                    d(start),
                    d(end),
                    f(row.number(C::Quantity)?),
                    days.map(|x| V::I32(x.round() as i32)).unwrap_or(V::Null),
                    visit.map(V::from).unwrap_or(V::Null),
                    fhir,
                ];
                (&DRUG_EXPOSURE, out)
            }
            "AllergyIntolerance" => {
                let picked = pick_code(codes, &[Vocabulary::Yj, Vocabulary::Hot9, Vocabulary::ReceiptDrug]);
                let kind = match row.text(C::Category)? {
                    Some("medication") => "allergy_medication",
                    Some("food") => "allergy_food",
                    Some("environment") => "allergy_environment",
                    _ => "allergy_other",
                };
                let out = vec![
                    id,
                    V::from(pid),
                    V::I32(0),
                    picked.map(|(c, _)| V::from(c)).unwrap_or(V::Null),
                    picked.map(|(_, v)| V::from(v.short())).unwrap_or(V::Null),
                    d(row.date(C::RecordedDate)?.or(row.date(C::Onset)?)),
                    V::from(kind),
                    row.text(C::Criticality)?.map(V::from).unwrap_or(V::Null),
                    fhir,
                ];
                (&OBSERVATION, out)
            }
            "Immunization" => {
                let picked = pick_code(codes, &[Vocabulary::Hot13, Vocabulary::Yj, Vocabulary::Cvx]);
                let dose = row.number(C::DoseNumber)?;
                let out = vec![
                    id,
                    V::from(pid),
                    picked.map(|(c, _)| V::from(c)).unwrap_or(V::Null),
                    picked.map(|(_, v)| V::from(v.short())).unwrap_or(V::Null),
                    d(row.date(C::Occurrence)?),
                    dose.map(|x| V::I32(x as i32)).unwrap_or(V::Null),
                    row.text(C::TargetDisease)?.map(V::from).unwrap_or(V::Null),
                    row.text(C::Status)?.map(V::from).unwrap_or(V::Null),
                    fhir,
                ];
                (&IMMUNIZATION, out)
            }
            "Composition" => {
                let Some(code) = row.text(C::TypeCode)? else {
                    return Err(reject("out_of_scope", "type", "not a referral, discharge summary or checkup report"));
                };
                let kind = match code {
                    "57133-1" => "referral",
                    "18842-5" => "discharge_summary",
                    _ => "checkup_report",
                };
                let out = vec![
                    id,
                    V::from(pid),
                    V::from(code),
                    V::from(kind),
                    d(row.date(C::Date)?),
                    d(row.date(C::PeriodStart)?),
                    d(row.date(C::PeriodEnd)?),
                    row.text(C::Custodian)?
                        .map(|c| V::from(self.key.pseudonym(Domain::Facility, &[c])))
                        .unwrap_or(V::Null),
                    fhir,
                ];
                (&DOCUMENT, out)
            }
            other => {
                return Err(reject("unmapped_resource_type", "resourceType", format!("no CDM table for {other}")));
            }
        };
        // Every field of the row has passed: a quarantined resource leaves no visit behind.
        if let Some((vid, visit)) = pending {
            self.write_visit(vid, &visit)?;
        }
        self.push(table, &out)
    }
}

/// The contained Encounters that a resource's rows refer to by `#id`, evaluated by the
/// Encounter view with the key `container#id` (the container's key is the row's
/// `resource_key`, else the entry's `fullUrl`, as in [`Run::map_row`]).
fn contained_visits(
    maps: &Mappings,
    at: &Positions,
    rows: &[Vec<Cell>],
    res: J<'_>,
    unit: &Unit<'_>,
) -> Vec<(String, Result<Vec<Vec<Cell>>>)> {
    let mut out: Vec<(String, Result<Vec<Vec<Cell>>>)> = Vec::new();
    for cells in rows {
        let row = Row { at, cells };
        let Some(local) = row.text(C::EncounterReference).ok().flatten().and_then(|r| r.strip_prefix('#')) else {
            continue;
        };
        // Looked up only for a row that refers to a contained resource (most rows do not).
        let Some(encounter) = maps.view("Encounter") else { return out };
        let Some(key) = row.record_key(unit.full_url).ok().flatten() else { continue };
        let Some(enc) = res.array_of("contained").find(|c| c.str_of("id") == Some(local)) else { continue };
        let ckey = contained_key(key, local);
        if out.iter().any(|(k, _)| *k == ckey) {
            continue;
        }
        let env = Env { aliases: unit.aliases, resource_key: Some(&ckey) };
        let rows = encounter.eval(enc, &env);
        out.push((ckey, rows));
    }
    out
}

/// Whether a reference in `res` points at nothing: a `#id` with no such contained resource,
/// a `urn:` that is no entry of the Bundle nor a supporting resource's `fullUrl`, or a
/// supporting resource (`Type/id`) missing from `known`. A data-quality check that does not
/// stop loading.
fn unresolved_reference(known: &HashSet<String>, res: J<'_>, unit: &Unit<'_>) -> bool {
    let mut unresolved = false;
    // The contained ids, looked up at the first `#` reference (most resources have none).
    let mut contained: Option<HashSet<&str>> = None;
    walk_references(res, &mut |r| {
        if let Some(local) = r.strip_prefix('#') {
            let ids =
                contained.get_or_insert_with(|| res.array_of("contained").filter_map(|c| c.str_of("id")).collect());
            unresolved |= !local.is_empty() && !ids.contains(local);
        } else if r.starts_with("urn:uuid:") || r.starts_with("urn:oid:") {
            unresolved |= !unit.aliases.is_some_and(|a| a.contains_key(r)) && !known.contains(r);
        } else if let Some(key) = unit.aliases.and_then(|a| a.get(r)) {
            let ty = key.split('/').next().unwrap_or_default();
            unresolved |= SUPPORTING.contains(&ty) && !known.contains(key);
        } else if SUPPORTING.contains(&super::fhirpath::reference_type_plain(r)) {
            // The type first: most references are to Patients, and need no key built.
            unresolved |= !known.contains(&super::fhirpath::reference_key_plain(r));
        }
    });
    unresolved
}

/// The key a reference names: its alias in the Bundle, else [`super::fhirpath::reference_key_plain`].
fn reference_key(r: &str, aliases: Option<&std::collections::HashMap<String, String>>) -> String {
    match aliases.and_then(|a| a.get(r)) {
        Some(k) => k.clone(),
        None => super::fhirpath::reference_key_plain(r),
    }
}

/// The key of a contained resource: its container's key and its local id.
fn contained_key(container: &str, local: &str) -> String {
    format!("{container}#{local}")
}

/// A supporting type without a mapping view: its resources are consumed by reference
/// resolution and facility pseudonyms, with no table of their own.
fn reference_only(maps: &Mappings, rt: &str) -> bool {
    SUPPORTING.contains(&rt) && maps.view(rt).is_none()
}

/// Every string `reference` member under `v` (an object or an array), outside `contained`.
/// Only containers are descended into: most members are scalars, decided in place.
fn walk_references(v: J<'_>, f: &mut dyn FnMut(&str)) {
    let container = |x: J<'_>| x.is_object() || x.is_array();
    if v.is_object() {
        for (k, x) in v.members() {
            if container(x) {
                if !key_eq(k, "contained") {
                    walk_references(x, f);
                }
            } else if key_eq(k, "reference")
                && let Some(s) = x.as_str()
            {
                f(s);
            }
        }
    } else {
        v.elements().filter(|x| container(*x)).for_each(|x| walk_references(x, f));
    }
}

/// The searcher for a second `"resourceType"` key, built once: `memmem::find` builds one per
/// call, which cost about 1 % of the ingest (pass 1 looks at every line).
static RESOURCE_TYPE_KEY: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
    std::sync::LazyLock::new(|| memchr::memmem::Finder::new(br#""resourceType""#));

/// A cheap pre-filter for pass 1 on NDJSON lines: could this line be a Patient or a
/// supporting resource? True when the line contains `"Patient"` or `"<supporting type>"`
/// anywhere (false positives are fine; pass 1 parses and checks). One scan over the line:
/// at each quote, the few type names starting with the next byte are compared.
fn pass1_candidate(line: &[u8]) -> bool {
    // Bulk Data exports start each line with the type: `{"resourceType":"Condition",…`. Such a
    // line with no other `"resourceType"` (no contained resource, no repeated key) is decided
    // by that type alone, with one SIMD search instead of a look at every quote.
    const HEAD: &[u8] = br#"{"resourceType":""#;
    if let Some(rest) = line.strip_prefix(HEAD)
        && let Some(end) = memchr::memchr(b'"', rest)
        && !rest[..end].contains(&b'\\')
        && RESOURCE_TYPE_KEY.find(&rest[end..]).is_none()
    {
        let ty = &rest[..end];
        return ty == b"Patient" || SUPPORTING.iter().any(|t| t.as_bytes() == ty);
    }
    // A `\u` escape could spell a type name in another way: let pass 1 parse the line.
    if memchr::memmem::find(line, br"\u").is_some() {
        return true;
    }
    let mut rest = line;
    while let Some(q) = rest.iter().position(|&b| b == b'"') {
        rest = &rest[q + 1..];
        let Some(&first) = rest.first() else { return false };
        if !first.is_ascii_uppercase() {
            continue;
        }
        let quoted = |t: &str| rest.len() > t.len() && rest.starts_with(t.as_bytes()) && rest[t.len()] == b'"';
        if quoted("Patient") || SUPPORTING.iter().any(|t| t.as_bytes()[0] == first && quoted(t)) {
            return true;
        }
    }
    false
}

/// Ingest FHIR inputs into CDM Parquet tables under `opts.out`, with `_quarantine.ndjson`
/// and `_report.json`, without a consent gate. Returns the (balanced) report.
pub fn ingest(opts: &FhirIngestOptions, key: &PseudonymKey) -> Result<IngestReport> {
    ingest_with_consent(opts, key, None)
}

/// As [`ingest`], applying a consent gate per Patient: an excluded Patient and every resource
/// whose subject resolves to it write no row and are counted consent-excluded, per record.
/// Uses two threads where the machine has two cores ([`ingest_with_threads`]).
pub fn ingest_with_consent(
    opts: &FhirIngestOptions,
    key: &PseudonymKey,
    consent: Option<&ConsentGate>,
) -> Result<IngestReport> {
    ingest_with_threads(opts, key, consent, crate::default_threads())
}

/// As [`ingest_with_consent`] with a thread count: with 2, each NDJSON input is read, parsed
/// and evaluated by its views on a second thread, a bounded number of records ahead of the
/// linkage, pseudonyms and CDM rows, which stay on the calling thread in input order (the
/// calling thread evaluates some records' views itself when it runs out of work). The outputs
/// are the same whatever the count. On the benchmark input two threads take 0.31–0.33 s
/// against 0.48–0.50 s for one (release build), with an allocator that frees across threads
/// cheaply (the `niji` binary uses mimalloc; with glibc's malloc two threads were no faster
/// than one: docs/PERFORMANCE.md).
pub fn ingest_with_threads(
    opts: &FhirIngestOptions,
    key: &PseudonymKey,
    consent: Option<&ConsentGate>,
    threads: usize,
) -> Result<IngestReport> {
    std::fs::create_dir_all(&opts.out).map_err(|source| IngestError::Write { path: opts.out.clone(), source })?;
    let maps = Mappings::builtin()?;
    let pipelined = threads >= 2;
    let mut run = Run {
        key,
        consent,
        maps: &maps,
        sink: CdmSink::create(&opts.out)?.with_batch_rows(opts.batch_rows).with_threads(threads),
        quarantine: QuarantineWriter::create(&opts.out.join("_quarantine.ndjson"))?,
        report: IngestReport::new("fhir", key.key_id()),
        persons: HashMap::new(),
        known: HashSet::new(),
        handled: vec![Vec::new(); opts.inputs.len()],
        visits: HashSet::new(),
    };
    let mut counts: Vec<Counts> = opts.inputs.iter().map(|_| Counts::default()).collect();
    for (i, path) in opts.inputs.iter().enumerate() {
        let file = display(path);
        let c = &mut counts[i];
        let candidate = |_: u64, line: &[u8]| pass1_candidate(line);
        let prepare = |u: &Unit<'_>| Run::prepare1(&maps, u);
        read::read_input_prepared(path, Some(&candidate), pipelined, &prepare, &mut |place, pre| {
            run.pass1(i, &file, place, c, pre)
        })?;
    }
    let handled = Handled::new(std::mem::take(&mut run.handled));
    tracing::info!(patients = handled.len(), "fhir ingest: pass 1 done");
    // Records pass 1 handled are skipped in pass 2: NDJSON lines before they are parsed.
    // The supporting keys are complete: pass 2 checks references against them where it
    // parses each record.
    let known = std::mem::take(&mut run.known);
    for (i, path) in opts.inputs.iter().enumerate() {
        let file = display(path);
        let c = &mut counts[i];
        let unhandled = |line: u64, _: &[u8]| !handled.contains(i, line);
        let prepare = |u: &Unit<'_>| Run::prepare2(&maps, &known, u);
        read::read_input_prepared(path, Some(&unhandled), pipelined, &prepare, &mut |place, pre| {
            run.pass2(i, &file, place, c, &handled, pre)
        })?;
    }
    for (path, c) in opts.inputs.iter().zip(counts) {
        run.report.add_input(InputReport {
            file: display(path),
            records: c.records,
            loaded: c.loaded,
            quarantined: c.quarantined,
            consent_excluded: c.consent_excluded,
            error: None,
        });
    }
    run.quarantine.finish()?;
    run.report.rows_per_table = run.sink.finish()?;
    run.report.check_balanced()?;
    run.report.write_json(&opts.out.join("_report.json"))?;
    Ok(run.report)
}

fn display(p: &Path) -> String {
    p.display().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_found_at_any_depth_outside_contained() {
        let res = serde_json::json!({
            "resourceType": "Observation",
            "subject": {"reference": "Patient/1"},
            "performer": [{"reference": "#p1"}, {"display": "x"}, "reference"],
            "contained": [{"resourceType": "Practitioner", "id": "p1", "x": {"reference": "Organization/9"}}],
            "basedOn": [[{"reference": "ServiceRequest/2"}]],
            "note": {"reference": {"reference": "Encounter/3"}},
            "reference": "Location/4",
            "extension": [{"valueReference": {"reference": 5}}]
        });
        let text = res.to_string();
        let mut found = Vec::new();
        super::super::json::Parser::new().parse(text.as_bytes(), |r| {
            walk_references(r.expect("json"), &mut |s| found.push(s.to_owned()));
        });
        found.sort();
        assert_eq!(found, ["#p1", "Encounter/3", "Location/4", "Patient/1", "ServiceRequest/2"]);
    }

    #[test]
    fn dates_and_codes() {
        // The byte parser against the split-based definition it replaced, on every string
        // of the shapes around the accepted ones.
        fn by_splitting(s: &str) -> Option<NaiveDate> {
            let mut it = s.split('T').next()?.split('-');
            let y = it.next().filter(|y| y.len() == 4 && y.bytes().all(|b| b.is_ascii_digit()))?;
            let num = |p: Option<&str>| match p {
                None => Some(None),
                Some(x) if x.len() == 2 && x.bytes().all(|b| b.is_ascii_digit()) => x.parse().ok().map(Some),
                Some(_) => None,
            };
            let (m, d) = (num(it.next())?, num(it.next())?);
            if it.next().is_some() {
                return None;
            }
            NaiveDate::from_ymd_opt(y.parse().ok()?, m.unwrap_or(1), d.unwrap_or(1))
        }
        let parts = ["", "2021", "0000", "9999", "202", "20a1", "-", "-07", "-7", "-13", "-00", "-02", "-30", "-29"];
        let tails = ["", "T", "T10:00:00+09:00", "-", "-01", "x", " ", "Z", "\u{ff12}"];
        let mut n = 0;
        for a in parts {
            for b in parts {
                for c in parts {
                    for t in tails {
                        let s = format!("{a}{b}{c}{t}");
                        assert_eq!(parse_fhir_date(&s), by_splitting(&s), "{s:?}");
                        n += 1;
                    }
                }
            }
        }
        assert!(n > 20_000);
        assert_eq!(parse_fhir_date("2021-07-12T00:00:00+09:00"), NaiveDate::from_ymd_opt(2021, 7, 12));
        assert_eq!(parse_fhir_date("1970-06"), NaiveDate::from_ymd_opt(1970, 6, 1));
        assert_eq!(parse_fhir_date("2021-02-30"), None);
        assert_eq!(parse_fhir_date("12/07/2021"), None);
        let codes = ["http://loinc.org|1", "http://medis.or.jp/CodeSystem/master-JLAC10-17digits|5E071000002399901"];
        let (c, v) = pick_code(codes, &[Vocabulary::Jlac10, Vocabulary::Loinc]).expect("code");
        assert_eq!(v, Vocabulary::Jlac10);
        assert!(is_infection_code(c, v));
        // The first vocabulary of `prefer` wins over earlier codes; then the first known
        // vocabulary; then the first code; a code without a value is no code.
        let loinc = "http://loinc.org|2";
        let jlac = "http://medis.or.jp/CodeSystem/master-JLAC10-17digits|3";
        let other = "http://example.org/x|4";
        let pick = |codes: &[&'static str], prefer: &[Vocabulary]| pick_code(codes.iter().copied(), prefer);
        assert_eq!(pick(&[loinc, jlac], &[Vocabulary::Jlac10, Vocabulary::Loinc]), Some(("3", Vocabulary::Jlac10)));
        assert_eq!(pick(&[jlac, loinc], &[Vocabulary::Loinc]), Some(("2", Vocabulary::Loinc)));
        assert_eq!(pick(&[other, loinc, jlac], &[Vocabulary::Icd10]), Some(("2", Vocabulary::Loinc)));
        assert_eq!(pick(&[other, "http://example.org/y|5"], &[Vocabulary::Icd10]), Some(("4", Vocabulary::Other)));
        assert_eq!(pick(&["http://loinc.org|", other], &[Vocabulary::Loinc]), Some(("4", Vocabulary::Other)));
        assert_eq!(pick(&["no-bar"], &[Vocabulary::Loinc]), None);
        assert!(Mappings::builtin().is_ok());
        // Pass 1's pre-filter: no false negatives, whatever the layout of the line.
        for (line, want) in [
            (r#"{"resourceType":"Patient","id":"p"}"#, true),
            (r#"{"resourceType":"Organization","id":"o"}"#, true),
            (r#"{"resourceType":"Condition","subject":{"reference":"Patient/p"}}"#, false),
            (r#"{"resourceType":"Condition","contained":[{"resourceType":"Practitioner"}]}"#, true),
            (r#"{"resourceType":"Condition","resourceType":"Patient"}"#, true),
            (r#"{"id":"p","resourceType":"Patient"}"#, true),
            (r#"{ "resourceType" : "Patient" }"#, true),
            (r#"{"id":"c","resourceType":"Condition"}"#, false),
            (r#"{"resourceType":"Pat\u0069ent","id":"p"}"#, true),
            (r#"{"id":"p","resourceType":"\u0050atient"}"#, true),
        ] {
            assert_eq!(pass1_candidate(line.as_bytes()), want, "{line}");
        }
    }

    #[test]
    fn every_column_the_loader_reads_is_in_a_view_at_its_position() {
        let maps = Mappings::builtin().expect("views");
        for &c in C::ALL {
            // A name no view has would read as null on every row: a misspelt column.
            let mut found = false;
            for m in maps.views.values() {
                let at = m.at[c as usize];
                match m.view.column(c.name()) {
                    Some(i) => {
                        assert_eq!(usize::from(at), i, "{} in {}", c.name(), m.view.resource);
                        found = true;
                    }
                    None => assert_eq!(at, u16::MAX, "{} in {}", c.name(), m.view.resource),
                }
            }
            assert!(found, "no mapping view has the column `{}`", c.name());
        }
        // A row reads its cells by those positions; a column its view lacks reads as null.
        let m = maps.mapping("Observation").expect("observation view");
        let mut cells = vec![Cell::Null; m.view.columns.len()];
        cells[m.view.column("unit").expect("unit")] = Cell::Str("mg/dL".into());
        let row = Row { at: &m.at, cells: &cells };
        assert_eq!(row.text(C::Unit).ok().flatten(), Some("mg/dL"));
        assert_eq!(row.text(C::Gender).ok().flatten(), None);
        assert!(matches!(row.number(C::Unit), Err(r) if r.field == "unit"));
    }
}
