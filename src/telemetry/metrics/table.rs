//! The storage under every labelled instrument: a table from label values to an aggregator
//! ([`Sum`] or [`Histogram`]), bounded by the OpenTelemetry metrics SDK cardinality limit
//! (<https://opentelemetry.io/docs/specs/otel/metrics/sdk/#cardinality-limits>): at most
//! [`CARDINALITY_LIMIT`] distinct label sets; measurements for any further set go to one
//! overflow series whose only attribute is `otel.metric.overflow=true`.
//!
//! The request path looks a label set up by the hash of its *borrowed* values under a read
//! lock and compares them with the stored owned copies, so a label set seen before costs a
//! hash, a shared lock and atomic adds, and no allocation. Only the first sight of a label
//! set takes the write lock and allocates.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, PoisonError, RwLock};

use crate::telemetry::data::{Point, Series};

/// Distinct label sets per instrument before overflow: the OpenTelemetry SDK default. The
/// SDK guarantees no overflow up to the limit, so the overflow series is the 2001st point.
pub(crate) const CARDINALITY_LIMIT: usize = 2000;

/// Longest label value kept, in bytes: a vetted name can still be long, and every byte is
/// stored per series and sent on every scrape and export.
pub(crate) const MAX_VALUE_BYTES: usize = 128;

/// The attribute of the overflow series (OpenTelemetry spec `otel.metric.overflow`; the
/// Prometheus rendering turns it into `otel_metric_overflow`).
pub(crate) const OVERFLOW_KEY: &str = "otel.metric.overflow";

/// Cuts `value` to at most [`MAX_VALUE_BYTES`], on a char boundary; borrows, never allocates.
pub(crate) fn truncate(value: &str) -> &str {
    if value.len() <= MAX_VALUE_BYTES {
        return value;
    }
    let mut end = MAX_VALUE_BYTES;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    &value[..end]
}

/// What a table keeps per label set.
pub(crate) trait Aggregator: Default {
    /// The value of the series now.
    fn point(&self) -> Point;
}

/// A monotonic count.
#[derive(Default)]
pub(crate) struct Sum(AtomicU64);

impl Sum {
    pub(crate) fn add(&self, n: u64) {
        self.0.fetch_add(n, Relaxed);
    }

    pub(crate) fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

impl Aggregator for Sum {
    fn point(&self) -> Point {
        Point::Count(self.get())
    }
}

/// Explicit bucket bounds in seconds, with the same bounds in whole nanoseconds so that an
/// observation is placed by integer comparison (no float conversion on the hot path).
pub(crate) struct Bounds<const B: usize> {
    pub(crate) seconds: [f64; B],
    nanos: [u64; B],
}

impl<const B: usize> Bounds<B> {
    pub(crate) const fn new(seconds: [f64; B]) -> Bounds<B> {
        let mut nanos = [0u64; B];
        let mut i = 0;
        while i < B {
            // Rounded: 0.075 s is 74_999_999.99.. ns as a float, and an observation of exactly
            // 75 ms must still fall in the `le="0.075"` bucket.
            nanos[i] = (seconds[i] * 1e9 + 0.5) as u64;
            i += 1;
        }
        Bounds { seconds, nanos }
    }

    /// The bucket of an observation: the first bound it does not exceed (`le` semantics),
    /// or `B` (`+Inf`).
    pub(crate) fn bucket(&self, nanos: u64) -> usize {
        self.nanos.partition_point(|&bound| bound < nanos)
    }
}

/// A duration histogram: per-bucket counts (the last is `+Inf`) and the sum in integer
/// nanoseconds, so that recording is two relaxed atomic adds and no CAS loop. The count is
/// the sum of the buckets, read at snapshot time.
pub(crate) struct Histogram<const B1: usize> {
    buckets: [AtomicU64; B1],
    sum_nanos: AtomicU64,
}

impl<const B1: usize> Default for Histogram<B1> {
    fn default() -> Self {
        Histogram { buckets: std::array::from_fn(|_| AtomicU64::new(0)), sum_nanos: AtomicU64::new(0) }
    }
}

impl<const B1: usize> Histogram<B1> {
    pub(crate) fn record(&self, bucket: usize, nanos: u64) {
        self.buckets[bucket.min(B1 - 1)].fetch_add(1, Relaxed);
        self.sum_nanos.fetch_add(nanos, Relaxed);
    }

    pub(crate) fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Relaxed)).sum()
    }
}

impl<const B1: usize> Aggregator for Histogram<B1> {
    fn point(&self) -> Point {
        let buckets: Vec<u64> = self.buckets.iter().map(|b| b.load(Relaxed)).collect();
        let sum = self.sum_nanos.load(Relaxed) as f64 / 1e9;
        Point::Histogram { count: buckets.iter().sum(), sum, buckets }
    }
}

/// A hasher for keys that already are hashes.
#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used; anything else still hashes, just not as cheaply.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

struct Cell<const N: usize, A> {
    values: [Box<str>; N],
    /// Shared, so that a cache of routes ([`Table::shared`]) can hold it.
    aggregator: Arc<A>,
    /// The next cell with the same hash (collisions are chained, not boxed in a `Vec`).
    next: Option<u32>,
}

struct Inner<const N: usize, A> {
    /// Hash of the borrowed values → the first cell with that hash.
    index: HashMap<u64, u32, BuildHasherDefault<PassThrough>>,
    /// In first-seen order, which is also the order of the snapshot.
    cells: Vec<Cell<N, A>>,
}

/// Label sets of one instrument with `N` variable labels named `keys`.
pub(crate) struct Table<const N: usize, A> {
    keys: [&'static str; N],
    /// Whether an empty value means "attribute absent" (semantic-convention attributes that
    /// are conditionally required) rather than an empty label (ToolHive's `mcp_resource_id`).
    omit_empty: bool,
    hasher: foldhash::fast::RandomState,
    inner: RwLock<Inner<N, A>>,
    overflow: Arc<A>,
    overflowed: AtomicBool,
}

impl<const N: usize, A: Default> Table<N, A> {
    pub(crate) fn new(keys: [&'static str; N], omit_empty: bool) -> Self {
        Table {
            keys,
            omit_empty,
            hasher: foldhash::fast::RandomState::default(),
            inner: RwLock::new(Inner { index: HashMap::default(), cells: Vec::new() }),
            overflow: Arc::default(),
            overflowed: AtomicBool::new(false),
        }
    }

    /// The aggregator of `values` (each cut to [`MAX_VALUE_BYTES`]), created on first
    /// sight, or the overflow aggregator past the limit; shared, for a cache of routes.
    pub(crate) fn shared(&self, values: [&str; N]) -> Arc<A> {
        self.visit(values, |found| match found {
            Some(aggregator) => aggregator.clone(),
            None => {
                self.overflowed.store(true, Relaxed);
                self.overflow.clone()
            }
        })
    }

    /// Runs `f` on the aggregator of `values`, created on first sight; `None` past the
    /// limit (which no new set is stored beyond).
    pub(crate) fn visit<R>(&self, values: [&str; N], f: impl FnOnce(Option<&Arc<A>>) -> R) -> R {
        let values = values.map(truncate);
        let hash = self.hasher.hash_one(values);
        {
            // A poisoned lock only means a panic elsewhere while it was held; the table
            // itself is never left half-updated (insertion is one push and one index write).
            let inner = self.inner.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(cell) = find(&inner, hash, &values) {
                return f(Some(&cell.aggregator));
            }
            if inner.cells.len() >= CARDINALITY_LIMIT {
                // Past the limit every new set overflows: decided under the read lock, so an
                // attacker minting label sets never serialises requests on the write lock.
                drop(inner);
                return f(None);
            }
        }
        let mut inner = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        // Another thread may have inserted it (or filled the table) between the two locks.
        if let Some(cell) = find(&inner, hash, &values) {
            return f(Some(&cell.aggregator));
        }
        if inner.cells.len() >= CARDINALITY_LIMIT {
            drop(inner);
            return f(None);
        }
        let position = inner.cells.len() as u32;
        let next = inner.index.insert(hash, position);
        inner.cells.push(Cell { values: values.map(Box::from), aggregator: Arc::default(), next });
        let aggregator = inner.cells[position as usize].aggregator.clone();
        // Not under the write lock: `f` may take another table's.
        drop(inner);
        f(Some(&aggregator))
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.inner.read().unwrap_or_else(PoisonError::into_inner).cells.len()
    }
}

impl<const N: usize, A: Aggregator> Table<N, A> {
    /// Appends one series per label set (constant labels first), then the overflow series
    /// if anything overflowed.
    pub(crate) fn series(&self, constant: &[(&'static str, &str)], out: &mut Vec<Series>) {
        self.series_with(constant, out, Aggregator::point);
    }

    /// As [`Table::series`], with the point made by `point` (a counter read from a
    /// histogram's count).
    pub(crate) fn series_with(
        &self,
        constant: &[(&'static str, &str)],
        out: &mut Vec<Series>,
        point: impl Fn(&A) -> Point,
    ) {
        let inner = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        out.reserve(inner.cells.len() + 1);
        for cell in &inner.cells {
            let mut labels = Vec::with_capacity(constant.len() + N);
            labels.extend(constant.iter().map(|&(k, v)| (k, v.to_owned())));
            for (key, value) in self.keys.iter().zip(&cell.values) {
                if !(self.omit_empty && value.is_empty()) {
                    labels.push((*key, value.to_string()));
                }
            }
            out.push(Series { labels, point: point(&cell.aggregator) });
        }
        drop(inner);
        if self.overflowed.load(Relaxed) {
            out.push(Series { labels: vec![(OVERFLOW_KEY, "true".to_owned())], point: point(&self.overflow) });
        }
    }
}

fn find<'a, const N: usize, A>(inner: &'a Inner<N, A>, hash: u64, values: &[&str; N]) -> Option<&'a Cell<N, A>> {
    let mut at = inner.index.get(&hash).copied();
    while let Some(position) = at {
        let cell = &inner.cells[position as usize];
        if cell.values.iter().zip(values).all(|(stored, given)| &**stored == *given) {
            return Some(cell);
        }
        at = cell.next;
    }
    None
}
