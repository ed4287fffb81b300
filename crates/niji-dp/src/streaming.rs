//! Streaming contribution bounding over person-contiguous input: the fast path of
//! [`DpPlan::bounded`](crate::DpPlan).
//!
//! The general bounding plan (see [`crate::rewrite`]) aggregates per (person, group) in a hash
//! table as large as the number of persons, then ranks each person's groups with a window. The
//! pipelines store every table sorted by `person_id`, so in the common case each scan partition
//! delivers a person's rows one after another. This module consumes the row stage (unit, group
//! keys, per-aggregate values; DataFusion computes it) partition by partition and keeps only the
//! current person's groups: when the unit changes, the person is finished: at most L of their
//! groups are chosen uniformly at random and their bounded contributions (the same formulas as
//! the general plan's stage 1 to 3) are added to per-group totals. Group keys are interned with
//! DataFusion's own [`GroupValues`], so the per-row cost is close to a plain GROUP BY.
//!
//! # Why the result is the general plan's
//!
//! Nothing about the input order is trusted; it is checked while streaming:
//! * within a partition the unit must be non-decreasing (each person one contiguous run), or the
//!   attempt stops at once;
//! * a person may still appear in several partitions, but only as the first or last person of
//!   each: those two are never finished inside the partition but kept whole (per group: row
//!   count, sum, sum of squares) and merged by unit across partitions before they are finished;
//! * the partitions' unit ranges `[first, last]` may therefore only meet in a shared end point;
//!   any other overlap means some person was finished in one partition while having rows in
//!   another, and the attempt is discarded.
//!
//! A discarded attempt (unsorted or overlapping partitions, or a plan shape the fast path does
//! not take) falls back to the general plan, so the released statistics never depend on the
//! input order, only the latency does.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};

use datafusion::arrow::array::{Array, ArrayRef, AsArray, OffsetSizeTrait, RecordBatch};
use datafusion::arrow::buffer::NullBuffer;
use datafusion::arrow::compute::kernels::cmp::neq;
use datafusion::arrow::compute::{SortOptions, cast};
use datafusion::arrow::datatypes::{DataType, Float64Type, Schema};
use datafusion::common::Column;
use datafusion::common::ScalarValue;
use datafusion::common::runtime::SpawnedTask;
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryReservation};
use datafusion::logical_expr::{EmitTo, Expr, LogicalPlan, LogicalPlanBuilder};
use datafusion::physical_plan::aggregates::group_values::{GroupValues, new_group_values};
use datafusion::physical_plan::aggregates::order::GroupOrdering;
use datafusion::physical_plan::{ExecutionPlanProperties, SendableRecordBatchStream};
use datafusion::prelude::SessionContext;
use futures::StreamExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::error::{DpError, Result};
use crate::release::Bounded;
use crate::rewrite::{AggKind, AggSpec, contrib_name, denominator_name, squares_name};

const STAGE: &str = "bounding";

fn failed<E>(_: E) -> DpError {
    DpError::Execution { stage: STAGE }
}

/// What the streaming bounding needs of an analysed query.
#[derive(Debug, Clone)]
pub(crate) struct Spec {
    /// The row stage: unit, `n_groups` group keys, then the values of the aggregates; rows
    /// without a unit are already dropped, public key domains are *not* applied (done here per
    /// group).
    pub rows: LogicalPlan,
    /// Per aggregate, its value's column in `rows`; `None`: a non-NULL constant (every row counts).
    pub value_columns: Vec<Option<usize>>,
    pub n_groups: usize,
    pub aggs: Vec<AggSpec>,
    /// Public key domain per group key (None: private key).
    pub domains: Vec<Option<Vec<ScalarValue>>>,
    /// L: groups per person.
    pub l: usize,
    /// C: rows per person and group.
    pub c: f64,
}

/// Where each aggregate keeps its per-(person, group) partials and its per-group totals.
#[derive(Debug, Clone)]
struct Layout {
    /// Per aggregate: offset of (n, s, q) in an entry's partials; s for bounded, q for variances.
    partial: Vec<(usize, Option<usize>, Option<usize>)>,
    partial_width: usize,
    /// Per aggregate: offset of its first total column.
    total: Vec<usize>,
    /// Names of the total columns, as the general bounding plan names them.
    total_names: Vec<String>,
    /// Per aggregate when every one is a row or person count (no values): the cap on one
    /// person's contribution to a group (C for rows, 1 for persons); `None` otherwise.
    count_caps: Option<Vec<f64>>,
}

impl Layout {
    fn new(aggs: &[AggSpec], c: f64) -> Layout {
        let mut partial = Vec::new();
        let mut w = 0;
        let mut total = Vec::new();
        let mut total_names = Vec::new();
        for (j, a) in aggs.iter().enumerate() {
            let n = w;
            w += 1;
            let s = a.kind.bounded().then(|| {
                w += 1;
                w - 1
            });
            let q = matches!(a.kind, AggKind::Var { .. }).then(|| {
                w += 1;
                w - 1
            });
            partial.push((n, s, q));
            total.push(total_names.len());
            match a.kind {
                AggKind::Count | AggKind::Persons | AggKind::Sum | AggKind::Median => {
                    total_names.push(contrib_name(j));
                }
                AggKind::Avg => total_names.extend([contrib_name(j), denominator_name(j)]),
                AggKind::Var { .. } => total_names.extend([contrib_name(j), squares_name(j), denominator_name(j)]),
            }
        }
        let count_caps = aggs
            .iter()
            .map(|a| match a.kind {
                AggKind::Count => Some(c),
                AggKind::Persons => Some(1.0),
                _ => None,
            })
            .collect();
        Layout { partial, partial_width: w, total, total_names, count_caps }
    }

    /// Counts only (one partial and one total per aggregate, in the same order): adds
    /// `min(n_j, cap_j)` to each aggregate's total, `n_j` given per aggregate.
    #[inline(always)]
    fn add_capped_counts(caps: &[f64], totals: &mut [f64], n: impl Fn(usize) -> f64) {
        for j in 0..caps.len().min(totals.len()) {
            totals[j] += n(j).min(caps[j]);
        }
    }

    /// Adds one person's bounded contribution to one group (`partials` of that person and
    /// group) into `totals` (that group's total columns). The formulas of the general plan.
    #[inline]
    fn contribute(&self, aggs: &[AggSpec], c: f64, partials: &[f64], totals: &mut [f64]) {
        if let Some(caps) = &self.count_caps {
            Layout::add_capped_counts(caps, totals, |j| partials[j]);
            return;
        }
        for (j, a) in aggs.iter().enumerate() {
            let (n_off, s_off, q_off) = self.partial[j];
            let n = partials[n_off];
            let t = self.total[j];
            // min(1, C / n): the person's own sum with at most C rows, else C times their mean.
            let weight = if n > 0.0 { (c / n).min(1.0) } else { 1.0 };
            let s = s_off.map_or(0.0, |o| partials[o]);
            match (a.kind, a.bounds) {
                (AggKind::Count, _) => totals[t] += n.min(c),
                (AggKind::Persons, _) => totals[t] += n.min(1.0),
                (AggKind::Sum | AggKind::Avg, Some((lo, hi))) => {
                    if n > 0.0 {
                        totals[t] += (s * weight).clamp(c * lo.min(0.0), c * hi.max(0.0));
                    }
                    if a.kind == AggKind::Avg {
                        totals[t + 1] += n.min(c);
                    }
                }
                (AggKind::Var { .. }, Some((lo, hi))) => {
                    let h = (hi - lo) / 2.0;
                    if n > 0.0 {
                        let q = q_off.map_or(0.0, |o| partials[o]);
                        totals[t] += (s * weight).clamp(-c * h, c * h);
                        totals[t + 1] += (q * weight).clamp(0.0, c * h * h);
                    }
                    totals[t + 2] += n.min(c);
                }
                // Medians and unbounded sums never reach the fast path (see `Spec::supported`).
                _ => {}
            }
        }
    }
}

impl Spec {
    /// The same row stage sorted by unit: person-contiguous by construction and merged into one
    /// partition, for inputs that are not (a hash join's output, unsorted or overlapping files).
    pub(crate) fn sorted(&self) -> Result<Spec> {
        let schema = self.rows.schema();
        let (qualifier, field) = schema.qualified_field(0);
        let unit = Expr::Column(Column::new(qualifier.cloned(), field.name()));
        let rows = LogicalPlanBuilder::from(self.rows.clone())
            .sort(vec![unit.sort(true, false)])
            .and_then(LogicalPlanBuilder::build)
            .map_err(failed)?;
        Ok(Spec { rows, ..self.clone() })
    }

    /// Medians need per-person values, not per-group totals: they keep the general plan.
    pub(crate) fn supported(aggs: &[AggSpec]) -> bool {
        aggs.iter().all(|a| a.kind != AggKind::Median && (!a.kind.bounded() || a.bounds.is_some()))
    }
}

/// One person's partials per group, kept whole (first and last person of a partition).
#[derive(Debug, Clone)]
struct Snapshot {
    unit: ScalarValue,
    /// (partition-local group id, partials)
    entries: Vec<(usize, Vec<f64>)>,
}

/// What one partition hands back.
struct Part {
    /// Group key columns, indexed by the partition's group id (empty without GROUP BY).
    keys: Vec<ArrayRef>,
    n_gids: usize,
    persons: Vec<i64>,
    /// `n_gids × total width`.
    totals: Vec<f64>,
    first: Option<Snapshot>,
    last: Option<Snapshot>,
    /// First and last unit.
    range: Option<(ScalarValue, ScalarValue)>,
}

/// The current person's groups: entries in arrival order, found by group id in O(1) through
/// generation stamps (no per-person hashing or clearing).
struct Person {
    generation: u32,
    stamp: Vec<u32>,
    slot: Vec<u32>,
    gids: Vec<usize>,
    partials: Vec<f64>,
    /// Row-count mode (every aggregate counts rows or persons, none has a value column, so all
    /// partials of an entry are its row count): the count per group id, valid where stamped;
    /// `partials` and `slot` stay unused.
    row_counts: bool,
    counts: Vec<f64>,
}

impl Person {
    fn new(row_counts: bool) -> Person {
        Person {
            generation: 1,
            stamp: Vec::new(),
            slot: Vec::new(),
            gids: Vec::new(),
            partials: Vec::new(),
            row_counts,
            counts: Vec::new(),
        }
    }

    fn grow(&mut self, n_gids: usize) {
        if self.stamp.len() < n_gids {
            self.stamp.resize(n_gids, 0);
            if self.row_counts {
                self.counts.resize(n_gids, 0.0);
            } else {
                self.slot.resize(n_gids, 0);
            }
        }
    }

    /// Row-count mode: adds one run of the person's rows (`gids`, their group ids) to their
    /// groups, skipping groups outside the public domains; equal neighbouring ids are added at
    /// once. The fields are borrowed once, outside the loop.
    fn add_row_counts(&mut self, gids: &[usize], allowed: &[bool]) {
        let generation = self.generation;
        let (stamp, counts, entries) = (&mut self.stamp, &mut self.counts, &mut self.gids);
        let mut i = 0;
        while i < gids.len() {
            let g = gids[i];
            let mut j = i + 1;
            while j < gids.len() && gids[j] == g {
                j += 1;
            }
            if allowed[g] {
                if stamp[g] != generation {
                    stamp[g] = generation;
                    counts[g] = 0.0;
                    entries.push(g);
                }
                counts[g] += (j - i) as f64;
            }
            i = j;
        }
    }

    /// Offset of the partials of group `g`, creating the entry on first sight.
    #[inline(always)]
    fn entry(&mut self, g: usize, width: usize) -> usize {
        if self.stamp[g] != self.generation {
            self.stamp[g] = self.generation;
            self.slot[g] = self.gids.len() as u32;
            self.gids.push(g);
            for _ in 0..width {
                self.partials.push(0.0);
            }
        }
        self.slot[g] as usize * width
    }

    fn reset(&mut self) {
        self.gids.clear();
        self.partials.clear();
        if self.generation == u32::MAX {
            self.stamp.iter_mut().for_each(|s| *s = 0);
            self.generation = 1;
        } else {
            self.generation += 1;
        }
    }

    fn snapshot(&self, unit: ScalarValue, width: usize) -> Snapshot {
        let entries = if self.row_counts {
            self.gids.iter().map(|&g| (g, vec![self.counts[g]; width])).collect()
        } else {
            self.gids
                .iter()
                .enumerate()
                .map(|(e, &g)| (g, self.partials[e * width..(e + 1) * width].to_vec()))
                .collect()
        };
        Snapshot { unit, entries }
    }
}

/// At most `l` of `k` entries, uniformly at random (all of them when `k ≤ l`).
fn choose(k: usize, l: usize) -> Vec<usize> {
    let mut buf = Vec::new();
    choose_into(&mut rand::rng(), k, l, &mut buf);
    buf
}

/// As [`choose`], into a reused buffer: a partial Fisher–Yates shuffle, so every `l`-subset of
/// the `k` entries is equally likely (the order of the chosen ones does not matter).
fn choose_into(rng: &mut impl Rng, k: usize, l: usize, buf: &mut Vec<usize>) {
    buf.clear();
    buf.extend(0..k);
    if k > l {
        for i in 0..l {
            let j = match u32::try_from(k - i) {
                Ok(n) => i + below(rng, n) as usize,
                Err(_) => rng.random_range(i..k),
            };
            buf.swap(i, j);
        }
        buf.truncate(l);
    }
}

/// Uniform in `0..n` (`n > 0`), without bias: Lemire's multiply-and-reject, which divides only
/// in the rare case that a draw lands in the rejection zone.
#[inline]
fn below(rng: &mut impl Rng, n: u32) -> u32 {
    let mut m = u64::from(rng.next_u32()) * u64::from(n);
    if (m as u32) < n {
        let threshold = n.wrapping_neg() % n;
        while (m as u32) < threshold {
            m = u64::from(rng.next_u32()) * u64::from(n);
        }
    }
    (m >> 32) as u32
}

/// The state of one partition's stream.
struct Partition {
    spec: Arc<Spec>,
    layout: Arc<Layout>,
    groups: Option<Box<dyn GroupValues>>,
    gid_buf: Vec<usize>,
    allowed: Vec<bool>,
    persons: Vec<i64>,
    totals: Vec<f64>,
    person: Person,
    /// Randomness of the group choice (seeded from the thread's generator per partition).
    rng: StdRng,
    /// Reused buffer of chosen entries.
    chosen: Vec<usize>,
    /// Units finished so far in this partition (the first one is kept, not finished).
    seen: usize,
    /// The current person's unit as a one-row slice, set at the end of each batch (`Some`
    /// whenever there is a current person).
    current: Option<ArrayRef>,
    /// The partition's first unit.
    first_unit: Option<ScalarValue>,
    first: Option<Snapshot>,
    reservation: MemoryReservation,
}

/// Why a partition gave up (the general plan takes over).
struct Discard;

impl Partition {
    fn n_gids(&self) -> usize {
        self.groups.as_ref().map_or(1, |g| g.len())
    }

    /// Ends the current person: the partition's first is kept whole, any other is bounded and
    /// added to the totals.
    fn finish_person(&mut self) {
        if self.current.is_none() {
            return;
        }
        if self.seen == 0 {
            if let Some(u) = self.first_unit.clone() {
                self.first = Some(self.person.snapshot(u, self.layout.partial_width));
            }
        } else {
            let k = self.person.gids.len();
            if k <= self.spec.l {
                for e in 0..k {
                    self.contribute(e);
                }
            } else {
                let mut chosen = std::mem::take(&mut self.chosen);
                choose_into(&mut self.rng, k, self.spec.l, &mut chosen);
                for &e in &chosen {
                    self.contribute(e);
                }
                self.chosen = chosen;
            }
        }
        self.seen += 1;
        self.person.reset();
    }

    /// Adds the current person's entry `e` to its group's totals.
    #[inline(always)]
    fn contribute(&mut self, e: usize) {
        let width = self.layout.partial_width;
        let tw = self.layout.total_names.len();
        let g = self.person.gids[e];
        self.persons[g] += 1;
        if self.person.row_counts
            && let Some(caps) = &self.layout.count_caps
        {
            // Row-count mode: every aggregate's partial is the group's row count.
            let n = self.person.counts[g];
            Layout::add_capped_counts(caps, &mut self.totals[g * tw..(g + 1) * tw], |_| n);
            return;
        }
        self.layout.contribute(
            &self.spec.aggs,
            self.spec.c,
            &self.person.partials[e * width..(e + 1) * width],
            &mut self.totals[g * tw..(g + 1) * tw],
        );
    }

    /// Group ids of a batch's rows, and whether each new group lies in the public domains.
    fn intern(&mut self, batch: &RecordBatch) -> std::result::Result<(), DpError> {
        let rows = batch.num_rows();
        let Some(groups) = self.groups.as_mut() else {
            self.gid_buf.clear();
            self.gid_buf.resize(rows, 0);
            return Ok(());
        };
        let before = groups.len();
        let cols: Vec<ArrayRef> = (1..=self.spec.n_groups).map(|i| batch.column(i).clone()).collect();
        groups.intern(&cols, &mut self.gid_buf).map_err(failed)?;
        let after = groups.len();
        if after > before {
            self.allowed.resize(after, true);
            self.persons.resize(after, 0);
            self.totals.resize(after * self.layout.total_names.len(), 0.0);
            self.person.grow(after);
            if self.spec.domains.iter().any(Option::is_some) {
                // Each new group was interned from a row of this batch: check its key once.
                let mut checked = vec![false; after - before];
                let mut pending = after - before;
                for (row, &g) in self.gid_buf.iter().enumerate() {
                    if pending == 0 {
                        break;
                    }
                    if g < before || checked[g - before] {
                        continue;
                    }
                    checked[g - before] = true;
                    pending -= 1;
                    let mut ok = true;
                    for (i, d) in self.spec.domains.iter().enumerate() {
                        if let Some(values) = d {
                            let v = ScalarValue::try_from_array(&cols[i], row).map_err(failed)?;
                            ok &= !v.is_null() && values.contains(&v);
                        }
                    }
                    self.allowed[g] = ok;
                }
            }
        }
        Ok(())
    }

    fn batch(&mut self, batch: &RecordBatch) -> std::result::Result<std::result::Result<(), Discard>, DpError> {
        let rows = batch.num_rows();
        if rows == 0 {
            return Ok(Ok(()));
        }
        let unit = batch.column(0);
        if unit.null_count() > 0 {
            return Ok(Err(Discard));
        }
        self.intern(batch)?;
        let width = self.layout.partial_width;

        // Values per aggregate: validity, and f64 values for bounded aggregates.
        let mut nulls: Vec<Option<NullBuffer>> = Vec::with_capacity(self.spec.aggs.len());
        let mut floats: Vec<Option<ArrayRef>> = Vec::with_capacity(self.spec.aggs.len());
        for (a, column) in self.spec.aggs.iter().zip(&self.spec.value_columns) {
            let Some(col) = column.map(|c| batch.column(c)) else {
                nulls.push(None);
                floats.push(None);
                continue;
            };
            nulls.push(col.logical_nulls().filter(|n| n.null_count() > 0));
            floats.push(if a.kind.bounded() { Some(cast(col, &DataType::Float64).map_err(failed)?) } else { None });
        }
        let floats: Vec<Option<&[f64]>> =
            floats.iter().map(|f| f.as_ref().map(|a| a.as_primitive::<Float64Type>().values().as_ref())).collect();
        // No NULLs to skip and no values to add: every row adds 1 to each aggregate's count.
        let counts_only = nulls.iter().all(Option::is_none) && floats.iter().all(Option::is_none);
        let centres: Vec<f64> =
            self.spec.aggs.iter().map(|a| a.bounds.map_or(0.0, |(lo, hi)| (lo + hi) / 2.0)).collect();

        // Run starts: row 0 when the unit differs from the previous batch's last, and every row
        // whose unit differs from the row before it.
        let mut starts: Vec<usize> = Vec::new();
        match &self.current {
            None => starts.push(0),
            Some(prev) => {
                let cmp =
                    datafusion::arrow::array::make_comparator(prev.as_ref(), unit.as_ref(), SortOptions::default())
                        .map_err(failed)?;
                match cmp(0, 0) {
                    Ordering::Equal => {}
                    Ordering::Less => starts.push(0),
                    Ordering::Greater => return Ok(Err(Discard)),
                }
            }
        }
        if unit_changes(unit.as_ref(), &mut starts)?.is_err() {
            return Ok(Err(Discard));
        }
        // Run ends: each start, then the end of the batch.
        let mut bounds = starts;
        bounds.push(rows);
        // Rows before the first start continue the previous batch's person.
        let mut segments: Vec<(usize, usize, bool)> = Vec::with_capacity(bounds.len());
        if bounds[0] > 0 {
            segments.push((0, bounds[0], false));
        }
        for w in bounds.windows(2) {
            segments.push((w[0], w[1], true));
        }
        for (start, end, new_person) in segments {
            if new_person {
                self.finish_person();
                if self.first_unit.is_none() {
                    self.first_unit = Some(ScalarValue::try_from_array(unit, start).map_err(failed)?);
                }
                // Within a batch only "is there a current person" matters; its unit is kept at
                // the end of the batch for the next batch's comparison.
                if self.current.is_none() {
                    self.current = Some(unit.slice(start, 1));
                }
            }
            if self.person.row_counts {
                self.person.add_row_counts(&self.gid_buf[start..end], &self.allowed);
                continue;
            }
            if counts_only {
                // Only row counts: add each run of equal group ids at once.
                let mut row = start;
                while row < end {
                    let g = self.gid_buf[row];
                    let run = self.gid_buf[row..end].iter().take_while(|&&x| x == g).count();
                    if self.allowed[g] {
                        let base = self.person.entry(g, width);
                        for (n_off, _, _) in &self.layout.partial {
                            self.person.partials[base + n_off] += run as f64;
                        }
                    }
                    row += run;
                }
                continue;
            }
            for row in start..end {
                let g = self.gid_buf[row];
                if !self.allowed[g] {
                    continue;
                }
                let base = self.person.entry(g, width);
                for (j, (n_off, s_off, q_off)) in self.layout.partial.iter().enumerate() {
                    if nulls[j].as_ref().is_some_and(|n| n.is_null(row)) {
                        continue;
                    }
                    self.person.partials[base + n_off] += 1.0;
                    if let (Some(s), Some(values)) = (s_off, floats[j]) {
                        let v = values[row];
                        if let Some(q) = q_off {
                            let d = v - centres[j];
                            self.person.partials[base + s] += d;
                            self.person.partials[base + q] += d * d;
                        } else {
                            self.person.partials[base + s] += v;
                        }
                    }
                }
            }
        }
        self.current = Some(unit.slice(rows - 1, 1));
        let size = self.groups.as_ref().map_or(0, |g| g.size())
            + (self.totals.capacity() + self.person.partials.capacity()) * 8
            + (self.person.stamp.capacity() + self.person.slot.capacity()) * 4
            + self.allowed.capacity()
            + self.persons.capacity() * 8;
        self.reservation.try_resize(size).map_err(failed)?;
        Ok(Ok(()))
    }

    /// End of stream: the last person is kept whole, group keys are emitted.
    fn end(mut self) -> std::result::Result<Part, DpError> {
        let width = self.layout.partial_width;
        let mut last = None;
        if let Some(unit) = self.current.take() {
            let u = ScalarValue::try_from_array(&unit, 0).map_err(failed)?;
            let snap = self.person.snapshot(u, width);
            if self.seen == 0 {
                self.first = Some(snap);
            } else {
                last = Some(snap);
            }
        }
        let n_gids = self.n_gids();
        let keys = match self.groups.as_mut() {
            Some(g) => g.emit(EmitTo::All).map_err(failed)?,
            None => Vec::new(),
        };
        let range = match (&self.first, &last) {
            (Some(f), Some(l)) => Some((f.unit.clone(), l.unit.clone())),
            (Some(f), None) => Some((f.unit.clone(), f.unit.clone())),
            _ => None,
        };
        Ok(Part { keys, n_gids, persons: self.persons, totals: self.totals, first: self.first, last, range })
    }
}

async fn run_partition(
    mut stream: SendableRecordBatchStream,
    mut part: Partition,
    abort: Arc<AtomicBool>,
) -> Result<Option<Part>> {
    while let Some(batch) = stream.next().await {
        if abort.load(AtomicOrdering::Relaxed) {
            return Ok(None);
        }
        let batch = batch.map_err(failed)?;
        if part.batch(&batch)?.is_err() {
            abort.store(true, AtomicOrdering::Relaxed);
            return Ok(None);
        }
    }
    part.end().map(Some)
}

/// Appends to `starts` every row `i ≥ 1` whose unit differs from row `i - 1`'s. `Err(Discard)`
/// when a unit is smaller than the one before it (the input is not sorted by unit).
///
/// Pseudonyms are strings or binaries of a fixed width; for those the rows are compared in
/// place, eight bytes at a time, and ordered only where they differ. Other types take Arrow's
/// `neq` kernel and comparator.
fn unit_changes(unit: &dyn Array, starts: &mut Vec<usize>) -> Result<std::result::Result<(), Discard>> {
    let rows = unit.len();
    if rows < 2 {
        return Ok(Ok(()));
    }
    match unit.data_type() {
        DataType::Utf8 => {
            let a = unit.as_string::<i32>();
            Ok(offset_runs(a.value_offsets(), a.value_data(), starts))
        }
        DataType::LargeUtf8 => {
            let a = unit.as_string::<i64>();
            Ok(offset_runs(a.value_offsets(), a.value_data(), starts))
        }
        DataType::Utf8View => {
            let a = unit.as_string_view();
            Ok(byte_runs((0..rows).map(|i| a.value(i)), starts))
        }
        DataType::Binary => {
            let a = unit.as_binary::<i32>();
            Ok(offset_runs(a.value_offsets(), a.value_data(), starts))
        }
        DataType::LargeBinary => {
            let a = unit.as_binary::<i64>();
            Ok(offset_runs(a.value_offsets(), a.value_data(), starts))
        }
        DataType::BinaryView => {
            let a = unit.as_binary_view();
            Ok(byte_runs((0..rows).map(|i| a.value(i)), starts))
        }
        _ => {
            let slice_a = unit.slice(1, rows - 1);
            let slice_b = unit.slice(0, rows - 1);
            let changed = neq(&slice_a, &slice_b).map_err(failed)?;
            let cmp = datafusion::arrow::array::make_comparator(unit, unit, SortOptions::default()).map_err(failed)?;
            for i in changed.values().set_indices() {
                if cmp(i, i + 1) != Ordering::Less {
                    return Ok(Err(Discard));
                }
                starts.push(i + 1);
            }
            Ok(Ok(()))
        }
    }
}

/// [`unit_changes`] over byte values (the caller has ruled out NULLs).
fn byte_runs<'a, V: AsRef<[u8]> + ?Sized + 'a>(
    mut values: impl Iterator<Item = &'a V>,
    starts: &mut Vec<usize>,
) -> std::result::Result<(), Discard> {
    let Some(first) = values.next() else { return Ok(()) };
    let mut prev = first.as_ref();
    for (i, v) in values.enumerate() {
        let cur = v.as_ref();
        match order_bytes(prev, cur) {
            Ordering::Equal => {}
            Ordering::Less => starts.push(i + 1),
            Ordering::Greater => return Err(Discard),
        }
        prev = cur;
    }
    Ok(())
}

/// [`unit_changes`] over offset-addressed bytes (`Utf8`, `Binary` and their large forms).
fn offset_runs<O: OffsetSizeTrait>(
    offsets: &[O],
    data: &[u8],
    starts: &mut Vec<usize>,
) -> std::result::Result<(), Discard> {
    let value = |i: usize| &data[offsets[i].as_usize()..offsets[i + 1].as_usize()];
    byte_runs((0..offsets.len().saturating_sub(1)).map(value), starts)
}

/// Byte order (as `[u8]`'s), eight bytes per step and inlined for equal lengths: a `memcmp`
/// call per row costs more than comparing a 32-byte pseudonym, and the first differing word,
/// read big-endian, orders the two.
#[inline(always)]
fn order_bytes(a: &[u8], b: &[u8]) -> Ordering {
    if a.len() != b.len() {
        return a.cmp(b);
    }
    let (wa, ra) = a.as_chunks::<8>();
    let (wb, rb) = b.as_chunks::<8>();
    let mut i = 0;
    while i < wa.len() {
        if wa[i] != wb[i] {
            return u64::from_be_bytes(wa[i]).cmp(&u64::from_be_bytes(wb[i]));
        }
        i += 1;
    }
    if ra.is_empty() { Ordering::Equal } else { ra.cmp(rb) }
}

/// Partition ranges may only meet in end points that are end points of both.
fn ranges_compatible(ranges: &[(ScalarValue, ScalarValue)]) -> bool {
    for (i, (a, b)) in ranges.iter().enumerate() {
        for (c, d) in &ranges[i + 1..] {
            let (Some(bc), Some(da)) = (b.partial_cmp(c), d.partial_cmp(a)) else { return false };
            if bc == Ordering::Less || da == Ordering::Less {
                continue; // disjoint
            }
            // They intersect: only in one point p that is an end point of both.
            let lo = if a.partial_cmp(c) == Some(Ordering::Greater) { a } else { c };
            let hi = if b.partial_cmp(d) == Some(Ordering::Less) { b } else { d };
            if lo != hi || !(lo == a || lo == b) || !(lo == c || lo == d) {
                return false;
            }
        }
    }
    true
}

/// One person's (group key, partials) merged across partitions.
type PersonGroups = Vec<(Vec<ScalarValue>, Vec<f64>)>;

/// Per-group totals keyed by group key, across partitions.
struct Totals {
    index: HashMap<Vec<ScalarValue>, usize>,
    keys: Vec<Vec<ScalarValue>>,
    persons: Vec<i64>,
    totals: Vec<f64>,
    width: usize,
}

impl Totals {
    fn slot(&mut self, key: Vec<ScalarValue>) -> usize {
        if let Some(&i) = self.index.get(&key) {
            return i;
        }
        let i = self.keys.len();
        self.index.insert(key.clone(), i);
        self.keys.push(key);
        self.persons.push(0);
        self.totals.resize(self.totals.len() + self.width, 0.0);
        i
    }
}

fn key_of(keys: &[ArrayRef], gid: usize) -> Result<Vec<ScalarValue>> {
    keys.iter().map(|k| ScalarValue::try_from_array(k, gid).map_err(failed)).collect()
}

/// Runs the streaming bounding. `Ok(None)`: the input is not person-contiguous (the caller runs
/// the general plan).
pub(crate) async fn bounded(spec: &Spec, ctx: &SessionContext) -> Result<Option<Bounded>> {
    let layout = Arc::new(Layout::new(&spec.aggs, spec.c));
    // Round-robin repartitioning would deal one sorted stream's batches to several partitions.
    let mut state = ctx.state();
    state.config_mut().options_mut().optimizer.enable_round_robin_repartition = false;
    let physical = state.create_physical_plan(&spec.rows).await.map_err(failed)?;
    let task_ctx = state.task_ctx();
    let schema = physical.schema();
    let group_schema =
        Arc::new(Schema::new(schema.fields().iter().skip(1).take(spec.n_groups).cloned().collect::<Vec<_>>()));
    let abort = Arc::new(AtomicBool::new(false));
    let shared = Arc::new(spec.clone());
    let partitions = physical.output_partitioning().partition_count();
    let mut tasks = Vec::with_capacity(partitions);
    for p in 0..partitions {
        let stream = physical.execute(p, task_ctx.clone()).map_err(failed)?;
        let groups = if spec.n_groups == 0 {
            None
        } else {
            Some(new_group_values(group_schema.clone(), &GroupOrdering::None).map_err(failed)?)
        };
        let n0 = usize::from(groups.is_none());
        let row_counts = layout.count_caps.is_some() && spec.value_columns.iter().all(Option::is_none);
        let mut person = Person::new(row_counts);
        person.grow(n0);
        let part = Partition {
            spec: shared.clone(),
            layout: layout.clone(),
            groups,
            gid_buf: Vec::new(),
            allowed: vec![true; n0],
            persons: vec![0; n0],
            totals: vec![0.0; n0 * layout.total_names.len()],
            person,
            rng: StdRng::from_rng(&mut rand::rng()),
            chosen: Vec::new(),
            seen: 0,
            current: None,
            first_unit: None,
            first: None,
            reservation: MemoryConsumer::new(format!("niji-dp streaming bounding [{p}]"))
                .register(&task_ctx.runtime_env().memory_pool),
        };
        tasks.push(SpawnedTask::spawn(run_partition(stream, part, abort.clone())));
    }
    let mut parts = Vec::with_capacity(partitions);
    for t in tasks {
        match t.join().await.map_err(failed)?? {
            Some(p) => parts.push(p),
            None => return Ok(None),
        }
    }
    let ranges: Vec<_> = parts.iter().filter_map(|p| p.range.clone()).collect();
    if !ranges_compatible(&ranges) {
        return Ok(None);
    }

    let width = layout.total_names.len();
    let mut out = Totals { index: HashMap::new(), keys: Vec::new(), persons: Vec::new(), totals: Vec::new(), width };
    if spec.n_groups == 0 {
        out.slot(Vec::new());
    }
    // Persons split over partitions (or alone in theirs): merged by unit, then finished.
    let mut boundary: HashMap<ScalarValue, PersonGroups> = HashMap::new();
    for part in &parts {
        for g in 0..part.n_gids {
            if part.persons[g] == 0 {
                continue;
            }
            let i = out.slot(key_of(&part.keys, g)?);
            out.persons[i] += part.persons[g];
            for (t, v) in
                out.totals[i * width..(i + 1) * width].iter_mut().zip(&part.totals[g * width..(g + 1) * width])
            {
                *t += v;
            }
        }
        for snap in [&part.first, &part.last].into_iter().flatten() {
            let entries = boundary.entry(snap.unit.clone()).or_default();
            for (g, partials) in &snap.entries {
                let key = key_of(&part.keys, *g)?;
                match entries.iter_mut().find(|(k, _)| *k == key) {
                    Some((_, acc)) => acc.iter_mut().zip(partials).for_each(|(a, p)| *a += p),
                    None => entries.push((key, partials.clone())),
                }
            }
        }
    }
    for entries in boundary.into_values() {
        for e in choose(entries.len(), spec.l) {
            let (key, partials) = &entries[e];
            let i = out.slot(key.clone());
            out.persons[i] += 1;
            layout.contribute(&spec.aggs, spec.c, partials, &mut out.totals[i * width..(i + 1) * width]);
        }
    }

    let mut columns: HashMap<String, Vec<f64>> = HashMap::new();
    for (t, name) in layout.total_names.iter().enumerate() {
        columns.insert(name.clone(), (0..out.keys.len()).map(|i| out.totals[i * width + t]).collect());
    }
    Ok(Some(Bounded {
        keys: out.keys,
        persons: out.persons,
        columns,
        medians: Vec::new(),
        streamed: true,
        sorted: false,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> ScalarValue {
        ScalarValue::Utf8(Some(v.to_owned()))
    }

    #[test]
    fn ranges_may_meet_only_in_shared_end_points() {
        let r = |a: &str, b: &str| (s(a), s(b));
        assert!(ranges_compatible(&[r("a", "c"), r("d", "f")]));
        assert!(ranges_compatible(&[r("a", "c"), r("c", "f")]));
        assert!(ranges_compatible(&[r("a", "c"), r("c", "c"), r("c", "f")]));
        // An interior person of one partition appears in another.
        assert!(!ranges_compatible(&[r("a", "e"), r("c", "c")]));
        assert!(!ranges_compatible(&[r("a", "e"), r("c", "f")]));
        assert!(!ranges_compatible(&[r("a", "e"), r("a", "e")]));
        assert!(!ranges_compatible(&[r("c", "f"), r("a", "d")]));
    }

    #[test]
    fn choose_is_bounded_and_distinct() {
        for k in 0..20 {
            let c = choose(k, 4);
            assert_eq!(c.len(), k.min(4));
            let mut d = c.clone();
            d.sort_unstable();
            d.dedup();
            assert_eq!(d.len(), c.len());
            assert!(c.iter().all(|&i| i < k));
        }
    }

    #[test]
    fn choose_takes_every_subset_equally_often() {
        // 2 of 5: ten subsets, each expected 2,000 times in 20,000 draws (σ ≈ 42).
        let mut rng = StdRng::seed_from_u64(7);
        let mut counts = HashMap::new();
        let mut buf = Vec::new();
        for _ in 0..20_000 {
            choose_into(&mut rng, 5, 2, &mut buf);
            let mut subset = buf.clone();
            subset.sort_unstable();
            *counts.entry(subset).or_insert(0u32) += 1;
        }
        assert_eq!(counts.len(), 10);
        for (subset, n) in counts {
            assert!((1_800..=2_200).contains(&n), "{subset:?} chosen {n} times");
        }
    }

    #[test]
    fn unit_changes_finds_runs_and_refuses_descending_units_for_every_type() {
        use datafusion::arrow::array::{BinaryArray, Int64Array, LargeStringArray, StringArray, StringViewArray};

        let sorted = [
            "a0000000000000000000000000000001",
            "a0000000000000000000000000000001",
            "a0000000000000000000000000000002",
            "b",
            "b",
            "b0",
        ];
        let unsorted = [
            "a0000000000000000000000000000002",
            "a0000000000000000000000000000002",
            "a0000000000000000000000000000001",
        ];
        let arrays = |v: &[&str]| -> Vec<ArrayRef> {
            vec![
                Arc::new(StringArray::from(v.to_vec())),
                Arc::new(LargeStringArray::from(v.to_vec())),
                Arc::new(StringViewArray::from(v.to_vec())),
                Arc::new(BinaryArray::from(v.iter().map(|s| s.as_bytes()).collect::<Vec<_>>())),
                // Sliced: offsets that do not start at zero.
                Arc::new(StringArray::from([&["z"], v].concat()).slice(1, v.len())),
            ]
        };
        for a in arrays(&sorted) {
            let mut starts = Vec::new();
            assert!(unit_changes(a.as_ref(), &mut starts).expect("runs").is_ok(), "{:?}", a.data_type());
            assert_eq!(starts, vec![2, 3, 5], "{:?}", a.data_type());
        }
        for a in arrays(&unsorted) {
            let mut starts = Vec::new();
            assert!(unit_changes(a.as_ref(), &mut starts).expect("runs").is_err(), "{:?}", a.data_type());
        }
        let ints: ArrayRef = Arc::new(Int64Array::from(vec![1, 1, 2, 5, 5]));
        let mut starts = Vec::new();
        assert!(unit_changes(ints.as_ref(), &mut starts).expect("runs").is_ok());
        assert_eq!(starts, vec![2, 3]);
        let ints: ArrayRef = Arc::new(Int64Array::from(vec![1, 3, 2]));
        assert!(unit_changes(ints.as_ref(), &mut Vec::new()).expect("runs").is_err());
    }

    #[test]
    fn order_bytes_is_slice_order() {
        let a = b"0123456789abcdef0123456789abcdefXYZ";
        for i in 0..a.len() {
            for delta in [1u8, 0x80] {
                let mut b = *a;
                b[i] ^= delta;
                assert_eq!(order_bytes(a, &b), a[..].cmp(&b[..]), "byte {i}");
                assert_eq!(order_bytes(&b, a), b[..].cmp(&a[..]), "byte {i}");
            }
        }
        assert_eq!(order_bytes(a, a), Ordering::Equal);
        assert_eq!(order_bytes(b"abc", b"abcd"), Ordering::Less);
        assert_eq!(order_bytes(b"abd", b"abcd"), Ordering::Greater);
        assert_eq!(order_bytes(b"", b""), Ordering::Equal);
    }
}
