//! The key stores of the id dictionary, in position order (position = id - first id).
//!
//! `u64` keys are a plain `Vec<u64>`. String keys are one UTF-8 arena ([`Arena`]) plus the end
//! offset of each key, kept as `u32`s ([`Ends`]): 4 bytes per key instead of 8, with the rare
//! crossings of a 4 GiB boundary recorded aside. The arena is a `String` and only ever receives
//! whole `&str`s, so every key range is valid UTF-8 and falls on character boundaries: keys come
//! back as `&str` without re-validation, and lookups compare bytes.
//!
//! Both grow by a quarter rather than doubling (see [`grown_capacity`]).

use super::prefetch::{prefetch, prefetch_span};

#[inline]
pub(super) fn hash_u64(mut k: u64) -> u64 {
    // murmur3's fmix64: a full-avalanche mixer, enough for integer keys.
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^ (k >> 33)
}

#[inline]
pub(super) fn hash_bytes(b: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(b)
}

/// The capacity to reserve for `len + additional` items, or `None` if `capacity` suffices.
///
/// A dictionary is one large, long-lived allocation per store, so doubling would leave up to
/// half of it unused; growing by a quarter bounds the slack at a fifth of the allocation while
/// keeping appends amortized O(1) (and glibc reallocates large blocks by moving pages, not bytes).
fn grown_capacity(capacity: usize, len: usize, additional: usize) -> Option<usize> {
    let need = len.saturating_add(additional);
    (need > capacity).then(|| need.max(capacity + (capacity / 4).max(64)))
}

/// Makes room in `v` for `additional` more items, growing by a quarter.
pub(super) fn reserve_gently<T>(v: &mut Vec<T>, additional: usize) {
    if let Some(cap) = grown_capacity(v.capacity(), v.len(), additional) {
        v.reserve_exact(cap - v.len());
    }
}

/// Appends `item` to `v`, growing by a quarter.
pub(super) fn push_gently<T>(v: &mut Vec<T>, item: T) {
    reserve_gently(v, 1);
    v.push(item);
}

/// End offsets of the keys in the arena, as `u32`s plus the positions where the full offset
/// passes a multiple of 2^32 (once per multiple passed, in order).
#[derive(Debug, Clone, Default)]
pub(super) struct Ends {
    low: Vec<u32>,
    wraps: Vec<u32>,
}

impl Ends {
    pub(super) fn len(&self) -> usize {
        self.low.len()
    }

    /// Records the next key's end offset `end`, after one at `prev` (0 for the first key).
    fn push(&mut self, prev: u64, end: u64) {
        let i = self.low.len() as u32;
        for _ in prev >> 32..end >> 32 {
            push_gently(&mut self.wraps, i);
        }
        push_gently(&mut self.low, end as u32);
    }

    /// Keeps the first `len` offsets.
    fn truncate(&mut self, len: usize) {
        self.low.truncate(len);
        let keep = self.wraps.partition_point(|&w| (w as usize) < len);
        self.wraps.truncate(keep);
    }

    /// The end offset of key `i`.
    #[inline(always)]
    pub(super) fn get(&self, i: usize) -> Option<u64> {
        let low = u64::from(*self.low.get(i)?);
        if self.wraps.is_empty() {
            return Some(low);
        }
        let high = self.wraps.partition_point(|&w| w as usize <= i) as u64;
        Some(high << 32 | low)
    }

    /// The byte range of key `i`.
    #[inline(always)]
    fn range(&self, i: usize) -> Option<(usize, usize)> {
        let end = self.get(i)?;
        let start = match i.checked_sub(1) {
            Some(p) => self.get(p)?,
            None => 0,
        };
        Some((usize::try_from(start).ok()?, usize::try_from(end).ok()?))
    }

    fn heap_bytes(&self) -> usize {
        (self.low.capacity() + self.wraps.capacity()) * std::mem::size_of::<u32>()
    }
}

/// String keys: one UTF-8 arena and the end offset of each key.
#[derive(Debug, Clone, Default)]
pub(super) struct Arena {
    text: String,
    ends: Ends,
    /// The length every key has, while they all have one ([`Lengths`]).
    lengths: Lengths,
    /// Whether some key was pushed that was not above the key before it (kept when keys are
    /// truncated away, as `Mixed` lengths are). While not, the last key is the largest.
    unordered: bool,
}

/// Whether the keys of an [`Arena`] all have one length. Then key `i` is the bytes
/// `i * len..(i + 1) * len` of the arena, and [`KeyStore::count_below`] reads keys without
/// their offsets. User ids usually are of one length (`u0000012345`, a UUID).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Lengths {
    #[default]
    NoKeys,
    All(usize),
    /// Some keys differ in length (kept when keys are truncated away: only a cost, never a
    /// wrong answer: `count_below` then reads the offsets).
    Mixed,
}

impl Arena {
    pub(super) fn len(&self) -> usize {
        self.ends.len()
    }

    pub(super) fn push(&mut self, key: &str) {
        if let Some(cap) = grown_capacity(self.text.capacity(), self.text.len(), key.len()) {
            self.text.reserve_exact(cap - self.text.len());
        }
        // Compared only while the keys are in order: once they are not, they never are again.
        if !self.unordered
            && let Some(last) = self.len().checked_sub(1).and_then(|i| self.bytes(i))
        {
            self.unordered = key.as_bytes() <= last;
        }
        let prev = self.text.len() as u64;
        self.text.push_str(key);
        self.ends.push(prev, self.text.len() as u64);
        self.lengths = match self.lengths {
            Lengths::NoKeys => Lengths::All(key.len()),
            Lengths::All(len) if len == key.len() => Lengths::All(len),
            _ => Lengths::Mixed,
        };
    }

    /// The spare capacity of the text and of the offsets (see [`crate::prefault::spare`]).
    #[cfg(feature = "import")]
    pub(super) fn spare(&self) -> Vec<(usize, usize)> {
        vec![
            crate::prefault::spare_text(&self.text),
            crate::prefault::spare(&self.ends.low),
        ]
    }

    /// Makes room for `keys` more keys of `bytes` bytes in all, exactly, as far as the
    /// allocator allows (a hint: what it refuses is grown later as keys come).
    pub(super) fn reserve(&mut self, keys: usize, bytes: usize) {
        let _ = self.text.try_reserve_exact(bytes);
        let _ = self.ends.low.try_reserve_exact(keys);
    }

    /// Bytes of all keys held.
    pub(super) fn text_len(&self) -> usize {
        self.text.len()
    }

    /// Keeps the first `len` keys.
    pub(super) fn truncate(&mut self, len: usize) {
        let end = len
            .checked_sub(1)
            .and_then(|i| self.ends.get(i))
            .unwrap_or(0);
        self.text
            .truncate(usize::try_from(end).unwrap_or(usize::MAX));
        self.ends.truncate(len);
        if len == 0 {
            self.lengths = Lengths::NoKeys;
            self.unordered = false;
        }
    }

    /// Whether `key` is above every key held (and so certainly not held): known while the keys
    /// came in increasing order, then it need only be above the last.
    pub(super) fn above_all(&self, key: &str) -> bool {
        !self.unordered
            && self
                .len()
                .checked_sub(1)
                .and_then(|i| self.bytes(i))
                .is_none_or(|last| key.as_bytes() > last)
    }

    /// The length of every key and the keys back to back, while they all have one length.
    pub(super) fn one_length(&self) -> Option<(usize, &[u8])> {
        match self.lengths {
            Lengths::All(len) => Some((len, self.text.as_bytes())),
            Lengths::NoKeys | Lengths::Mixed => None,
        }
    }

    /// Key `i`.
    #[inline]
    pub(super) fn get(&self, i: usize) -> Option<&str> {
        let (start, end) = self.ends.range(i)?;
        self.text.get(start..end)
    }

    /// Hints that the offsets of key `i` will be read soon.
    #[inline(always)]
    pub(super) fn prefetch_offsets(&self, i: usize) {
        super::prefetch::prefetch(&self.ends.low, i);
        if i > 0 {
            super::prefetch::prefetch(&self.ends.low, i - 1);
        }
    }

    /// Hints that the bytes of key `i` will be read soon (reads its offsets).
    #[inline(always)]
    pub(super) fn prefetch_text(&self, i: usize) {
        if let Some((start, end)) = self.ends.range(i) {
            super::prefetch::prefetch_span(self.text.as_bytes(), start, end.saturating_sub(1));
        }
    }

    #[inline(always)]
    pub(super) fn bytes(&self, i: usize) -> Option<&[u8]> {
        let (start, end) = self.ends.range(i)?;
        self.text.as_bytes().get(start..end)
    }

    pub(super) fn heap_bytes(&self) -> usize {
        self.text.capacity() + self.ends.heap_bytes()
    }
}

/// `a.cmp(b)`, with keys of one length of 8 to 16 bytes (the usual user ids) compared as two
/// big-endian words instead of by a call to `memcmp`.
#[inline(always)]
fn cmp_bytes(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    if a.len() == b.len()
        && a.len() <= 16
        && let (Some(a0), Some(a1), Some(b0), Some(b1)) = (
            a.first_chunk::<8>(),
            a.last_chunk::<8>(),
            b.first_chunk::<8>(),
            b.last_chunk::<8>(),
        )
    {
        // The last words overlap the first ones where the keys are shorter than 16 bytes;
        // the overlap is equal whenever the first words are, so the order is the same.
        return u64::from_be_bytes(*a0)
            .cmp(&u64::from_be_bytes(*b0))
            .then_with(|| u64::from_be_bytes(*a1).cmp(&u64::from_be_bytes(*b1)));
    }
    a.cmp(b)
}

/// `a == b`, inlined for keys of 8 to 16 bytes (two overlapping word compares instead of a call).
#[inline]
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    match (a.first_chunk::<8>(), a.last_chunk::<8>()) {
        (Some(a0), Some(a1)) if a.len() <= 16 => {
            b.first_chunk::<8>() == Some(a0) && b.last_chunk::<8>() == Some(a1)
        }
        _ => a == b,
    }
}

/// A key store as the lookups see it: hashing, prefetching and comparing by position.
pub(super) trait KeyStore {
    /// A key to look up, in the form this store compares.
    type Probe<'k>: Copy;

    /// `key` in this store's form; `None` if it is of the other kind (and so absent).
    fn probe(key: super::KeyRef<'_>) -> Option<Self::Probe<'_>>;

    fn hash(probe: Self::Probe<'_>) -> u64;

    /// The hash of the key at position `i`.
    fn hash_at(&self, i: usize) -> u64;

    /// Hints that the entry of position `i` (the key, or its offsets) will be read.
    fn prefetch_entry(&self, i: u32);

    /// Hints that the bytes of the key at position `i` will be read; its entry is in cache.
    fn prefetch_key(&self, i: u32);

    /// Whether the key at position `i` is `probe` (false if there is no position `i`).
    fn matches(&self, i: u32, probe: Self::Probe<'_>) -> bool;

    /// How the key at position `i` orders against `probe` (numbers by value, strings by their
    /// bytes); `None` if there is no position `i`.
    fn cmp_at(&self, i: u32, probe: Self::Probe<'_>) -> Option<std::cmp::Ordering>;

    /// How many of the [`SCAN`] keys at positions `start..start + SCAN` are below `probe`,
    /// counted without a branch on any of them; `None` when some of those positions do not
    /// exist, or (strings) the keys are not all of the probe's length, 8 to 16 bytes. Where
    /// the keys increase, that is the offset of the first key not below `probe`.
    fn count_below(&self, start: u32, probe: Self::Probe<'_>) -> Option<u32>;
}

/// Keys [`KeyStore::count_below`] compares at once. Four, not more: in a dense run the key
/// sought is usually among the first few, and every key compared costs the same whether it
/// decides or not (8 took ~40% longer on keys 2.5 positions apart, 16 longer still).
pub(super) const SCAN: u32 = 4;

/// The first and the last 8 bytes of `key` as big-endian numbers (`None` under 8 bytes): for
/// keys of one length of 8 to 16 bytes, their order is the keys' order.
#[inline(always)]
fn words(key: &[u8]) -> Option<(u64, u64)> {
    Some((
        u64::from_be_bytes(*key.first_chunk::<8>()?),
        u64::from_be_bytes(*key.last_chunk::<8>()?),
    ))
}

impl KeyStore for Vec<u64> {
    type Probe<'k> = u64;

    #[inline]
    fn probe(key: super::KeyRef<'_>) -> Option<u64> {
        match key {
            super::KeyRef::U64(k) => Some(k),
            super::KeyRef::Str(_) => None,
        }
    }

    #[inline]
    fn hash(probe: u64) -> u64 {
        hash_u64(probe)
    }

    #[inline]
    fn hash_at(&self, i: usize) -> u64 {
        self.get(i).map_or(0, |&k| hash_u64(k))
    }

    #[inline]
    fn prefetch_entry(&self, i: u32) {
        prefetch(self, i as usize);
    }

    #[inline]
    fn prefetch_key(&self, _i: u32) {}

    #[inline]
    fn matches(&self, i: u32, probe: u64) -> bool {
        self.get(i as usize) == Some(&probe)
    }

    #[inline]
    fn cmp_at(&self, i: u32, probe: u64) -> Option<std::cmp::Ordering> {
        self.get(i as usize).map(|k| k.cmp(&probe))
    }

    #[inline(always)]
    fn count_below(&self, start: u32, probe: u64) -> Option<u32> {
        let start = start as usize;
        let keys = self.get(start..start + SCAN as usize)?;
        Some(keys.iter().map(|&k| u32::from(k < probe)).sum())
    }
}

impl KeyStore for Arena {
    type Probe<'k> = &'k [u8];

    #[inline]
    fn probe(key: super::KeyRef<'_>) -> Option<&[u8]> {
        match key {
            super::KeyRef::Str(s) => Some(s.as_bytes()),
            super::KeyRef::U64(_) => None,
        }
    }

    #[inline]
    fn hash(probe: &[u8]) -> u64 {
        hash_bytes(probe)
    }

    #[inline]
    fn hash_at(&self, i: usize) -> u64 {
        self.bytes(i).map_or(0, hash_bytes)
    }

    #[inline]
    fn prefetch_entry(&self, i: u32) {
        let i = i as usize;
        prefetch_span(&self.ends.low, i.saturating_sub(1), i);
    }

    #[inline]
    fn prefetch_key(&self, i: u32) {
        if let Some((start, end)) = self.ends.range(i as usize) {
            prefetch_span(
                self.text.as_bytes(),
                start,
                end.saturating_sub(1).max(start),
            );
        }
    }

    #[inline]
    fn matches(&self, i: u32, probe: &[u8]) -> bool {
        self.bytes(i as usize)
            .is_some_and(|key| same_bytes(key, probe))
    }

    #[inline(always)]
    fn cmp_at(&self, i: u32, probe: &[u8]) -> Option<std::cmp::Ordering> {
        self.bytes(i as usize).map(|key| cmp_bytes(key, probe))
    }

    #[inline(always)]
    fn count_below(&self, start: u32, probe: &[u8]) -> Option<u32> {
        const N: usize = SCAN as usize;
        let start = start as usize;
        let len = probe.len();
        if len > 16 {
            return None;
        }
        let (p0, p1) = words(probe)?;
        let first = if self.lengths == Lengths::All(len) {
            // Every key is the probe's length: key `start` begins at `start * len`.
            start.checked_mul(len)?
        } else {
            if !self.ends.wraps.is_empty() {
                return None;
            }
            // The end offsets of the key before `start` and of the `SCAN` keys: all the
            // probe's length apart, so the keys lie back to back at a fixed stride.
            let before = match start.checked_sub(1) {
                Some(p) => *self.ends.low.get(p)?,
                None => 0,
            };
            let ends = self.ends.low.get(start..start + N)?;
            let (_, same) = ends.iter().fold((before, true), |(prev, same), &end| {
                (end, same & (end.wrapping_sub(prev) as usize == len))
            });
            if !same {
                return None;
            }
            before as usize
        };
        let text = self.text.as_bytes().get(first..first + N * len)?;
        // Each key as one big-endian 128-bit number (its first and last 8 bytes, which
        // overlap below 16 bytes): one wide comparison per key, no branch.
        let probe = u128::from(p0) << 64 | u128::from(p1);
        let mut below = 0;
        for k in 0..N {
            let at = k * len;
            let k0 = u64::from_be_bytes(*text.get(at..at + 8)?.first_chunk::<8>()?);
            let k1 = u64::from_be_bytes(*text.get(at + len - 8..at + len)?.first_chunk::<8>()?);
            below += u32::from((u128::from(k0) << 64 | u128::from(k1)) < probe);
        }
        Some(below)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(crate::testutil::proptest_config(256))]
        /// The word-wise order of same-length keys is the byte order, for every length.
        #[test]
        fn cmp_bytes_is_the_byte_order(
            a in proptest::collection::vec(any::<u8>(), 0..20),
            b in proptest::collection::vec(any::<u8>(), 0..20),
            same_len in any::<bool>(),
            common in 0usize..20,
        ) {
            let mut b = b;
            if same_len {
                b.resize(a.len(), 0);
            }
            // Long shared prefixes, where the words' overlap matters.
            let shared = common.min(a.len()).min(b.len());
            b[..shared].copy_from_slice(&a[..shared]);
            prop_assert_eq!(cmp_bytes(&a, &b), a.cmp(&b));
            prop_assert_eq!(cmp_bytes(&b, &a), b.cmp(&a));
            prop_assert_eq!(cmp_bytes(&a, &a), std::cmp::Ordering::Equal);
        }
    }

    proptest! {
        #![proptest_config(crate::testutil::proptest_config(64))]
        /// End offsets far past 4 GiB (no arena behind them) read back exactly.
        #[test]
        fn ends_survive_4gib_crossings(lens in proptest::collection::vec(
            prop_oneof![0u64..100, (1u64 << 31)..(1u64 << 34)], 0..200)
        ) {
            let mut ends = Ends::default();
            let mut model = Vec::new();
            let mut total = 0u64;
            for len in lens {
                ends.push(total, total + len);
                total += len;
                model.push(total);
            }
            for (i, &end) in model.iter().enumerate() {
                prop_assert_eq!(ends.get(i), Some(end));
            }
            prop_assert_eq!(ends.get(model.len()), None);
        }
    }

    #[test]
    fn growth_is_geometric_with_bounded_slack() {
        let mut v = Vec::new();
        let mut reallocations = 0;
        for i in 0..1_000_000u32 {
            let cap = v.capacity();
            push_gently(&mut v, i);
            reallocations += usize::from(v.capacity() != cap);
            assert!(v.capacity() <= v.len() + v.len() / 4 + 64);
        }
        assert!(reallocations < 60, "{reallocations}");
    }

    proptest! {
        #![proptest_config(crate::testutil::proptest_config(256))]
        /// `count_below` is the number of the `SCAN` keys from `start` below the probe, as a
        /// one-by-one comparison counts it (whatever their order), or `None` exactly when a
        /// position is missing or a key's length (or the probe's) is not the one 8 to 16 bytes.
        #[test]
        fn count_below_counts_like_one_by_one_comparisons(
            len in 6usize..19,
            keys in proptest::collection::vec((any::<u64>(), any::<u64>(), 0u8..12), 0..40),
            probe in (any::<u64>(), any::<u64>(), 0u8..12),
            start in 0u32..40,
        ) {
            // Keys from few distinct bytes so that prefixes and whole keys often tie; now and
            // then one of another length.
            let make = |(a, b, odd): (u64, u64, u8)| -> String {
                let bytes = a.to_be_bytes().into_iter().chain(b.to_be_bytes());
                let n = if odd == 0 { len + 1 } else { len };
                bytes.cycle().take(n).map(|x| char::from(b'a' + x % 3)).collect()
            };
            let mut arena = Arena::default();
            let keys: Vec<String> = keys.into_iter().map(make).collect();
            for k in &keys {
                arena.push(k);
            }
            let probe = make(probe);
            let window = keys.get(start as usize..(start + SCAN) as usize);
            let want = window
                .filter(|w| {
                    (8..=16).contains(&probe.len()) && w.iter().all(|k| k.len() == probe.len())
                })
                .map(|w| w.iter().filter(|k| k.as_bytes() < probe.as_bytes()).count() as u32);
            prop_assert_eq!(arena.count_below(start, probe.as_bytes()), want);
            let numbers: Vec<u64> = keys.iter().map(|k| k.len() as u64 * 7 + k.as_bytes()[0] as u64).collect();
            let p = probe.len() as u64 * 7 + probe.as_bytes()[0] as u64;
            let want = numbers
                .get(start as usize..(start + SCAN) as usize)
                .map(|w| w.iter().filter(|&&k| k < p).count() as u32);
            prop_assert_eq!(numbers.count_below(start, p), want);
        }
    }

    #[test]
    fn short_key_comparison_is_byte_equality() {
        let keys: Vec<Vec<u8>> = (0..=20usize)
            .flat_map(|n| {
                [
                    vec![b'a'; n],
                    (0..n as u8).collect(),
                    (1..=n as u8).collect(),
                ]
            })
            .collect();
        for a in &keys {
            for b in &keys {
                assert_eq!(same_bytes(a, b), a == b, "{a:?} {b:?}");
            }
            let mut c = a.clone();
            for i in 0..c.len() {
                c[i] ^= 1;
                assert!(!same_bytes(a, &c));
                c[i] ^= 1;
            }
        }
    }

    /// The arena knows when its keys share one length, through pushes and truncations, and
    /// counts the same either way (by stride, or by the keys' offsets).
    #[test]
    fn arena_tracks_one_key_length() {
        let key = |v: usize| format!("u{v:010}");
        let mut a = Arena::default();
        assert_eq!(a.lengths, Lengths::NoKeys);
        for v in (0..40).step_by(2) {
            a.push(&key(v));
        }
        assert_eq!(a.lengths, Lengths::All(11));
        // Keys 0, 2, 4, 6 at positions 0..4: three of them below 5.
        assert_eq!(a.count_below(0, key(5).as_bytes()), Some(3));
        assert_eq!(a.count_below(3, key(100).as_bytes()), Some(4));
        assert_eq!(a.count_below(17, key(0).as_bytes()), None, "past the end");
        assert_eq!(
            a.count_below(0, b"u0005"),
            None,
            "a probe of another length"
        );
        a.push("short");
        assert_eq!(a.lengths, Lengths::Mixed);
        // Offsets decide now: the same counts where the window is of one length.
        assert_eq!(a.count_below(0, key(5).as_bytes()), Some(3));
        assert_eq!(
            a.count_below(17, key(0).as_bytes()),
            None,
            "`short` in the window"
        );
        a.truncate(20);
        assert_eq!(a.lengths, Lengths::Mixed, "kept: a cost, not an error");
        assert_eq!(a.count_below(16, key(35).as_bytes()), Some(2));
        a.truncate(0);
        assert_eq!(a.lengths, Lengths::NoKeys);
        a.push("ab");
        assert_eq!(a.lengths, Lengths::All(2));
    }

    #[test]
    fn arena_keys_read_back_as_str() {
        let mut a = Arena::default();
        for k in ["", "a", "ünïcode", "", "zz"] {
            a.push(k);
        }
        assert_eq!(a.get(2), Some("ünïcode"));
        assert_eq!(a.get(3), Some(""));
        assert_eq!(a.get(5), None);
        assert!(a.matches(4, b"zz") && !a.matches(4, b"z") && !a.matches(9, b""));
    }
}
