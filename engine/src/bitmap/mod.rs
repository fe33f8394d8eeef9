//! Bitmap algorithms over CRoaring bitmaps, owned or zero-copy views alike.
//!
//! - [`bsi`]: bit-sliced indexes for numeric fields: range predicates and aggregates.
//! - `portable`: zero-copy access to the containers of serialized bitmaps, a block at a time.

/// Generates `$name`: runs the `#[inline(always)]` kernel `$generic` in an AVX-512 or AVX2
/// build where the CPU has one (the baseline is x86-64-v2), else as compiled. `$avx512` and
/// `$avx2` name those builds, so tests can check that every build agrees.
macro_rules! dispatched {
    ($(#[$doc:meta])* fn $name:ident / $avx512:ident / $avx2:ident = $generic:ident(
        $($arg:ident: $ty:ty),*) $(-> $ret:ty)?) => {
        $(#[$doc])*
        fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                if std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512vpopcntdq")
                {
                    // SAFETY: the CPU has both features, checked just above.
                    return unsafe { $avx512($($arg),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2") {
                    // SAFETY: the CPU has AVX2, checked just above.
                    return unsafe { $avx2($($arg),*) };
                }
            }
            $generic($($arg),*)
        }

        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx512f,avx512vpopcntdq")]
        fn $avx512($($arg: $ty),*) $(-> $ret)? {
            $generic($($arg),*)
        }

        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2")]
        fn $avx2($($arg: $ty),*) $(-> $ret)? {
            $generic($($arg),*)
        }
    };
}

pub(crate) use dispatched;

pub mod bsi;
pub(crate) mod fused;
pub(crate) mod portable;

use std::borrow::Cow;

use croaring::{Bitmap, Portable};

/// The cookie of CRoaring's portable format without run containers.
pub(crate) const NO_RUN_COOKIE: u32 = 12346;

/// One container of a bitmap written by [`from_containers`].
#[derive(Debug)]
pub(crate) enum Container<'a> {
    /// More than 4,096 members: 1,024 words, and how many bits are set.
    Bitset(Cow<'a, [u64]>, u32),
    /// At most 4,096 members (the low 16 bits), strictly increasing.
    Array(Vec<u16>),
}

impl<'a> Container<'a> {
    /// The container of one block of 1,024 words holding `card` members (`None` when empty): a
    /// bitset (borrowing the words) above 4,096 members, an array otherwise.
    pub(crate) fn of_words(words: &'a [u64], card: u32) -> Option<Self> {
        if card > 4096 {
            return Some(Container::Bitset(Cow::Borrowed(words), card));
        }
        if card == 0 {
            return None;
        }
        let mut values = Vec::with_capacity(card as usize);
        for (i, &w) in words.iter().enumerate() {
            let mut w = w;
            while w != 0 {
                values.push((i as u32 * 64 + w.trailing_zeros()) as u16);
                w &= w - 1;
            }
        }
        Some(Container::Array(values))
    }

    /// The same container, owning its words.
    pub(crate) fn into_owned(self) -> Container<'static> {
        match self {
            Container::Bitset(words, card) => {
                Container::Bitset(Cow::Owned(words.into_owned()), card)
            }
            Container::Array(values) => Container::Array(values),
        }
    }
}

impl Container<'_> {
    fn cardinality(&self) -> u32 {
        match self {
            Container::Bitset(_, card) => *card,
            Container::Array(v) => v.len() as u32,
        }
    }

    fn bytes(&self) -> usize {
        match self {
            Container::Bitset(..) => 8192,
            Container::Array(v) => v.len() * 2,
        }
    }
}

/// A bitmap of `containers` (keyed by the high 16 bits of their members, strictly increasing,
/// none empty): written in CRoaring's portable format and read back, which costs a copy per
/// container instead of an insertion per member. `None` if CRoaring refuses the bytes (never,
/// for well-formed input).
pub(crate) fn from_containers(containers: &[(u16, Container<'_>)]) -> Option<Bitmap> {
    let n = containers.len();
    let body: usize = containers.iter().map(|c| c.1.bytes()).sum();
    let mut out = Vec::with_capacity(8 + n * 8 + body);
    out.extend_from_slice(&NO_RUN_COOKIE.to_le_bytes());
    out.extend_from_slice(&(n as u32).to_le_bytes());
    for (key, c) in containers {
        out.extend_from_slice(&key.to_le_bytes());
        out.extend_from_slice(&((c.cardinality() - 1) as u16).to_le_bytes());
    }
    let mut offset = 8 + n * 8;
    for (_, c) in containers {
        out.extend_from_slice(&(offset as u32).to_le_bytes());
        offset += c.bytes();
    }
    for (_, c) in containers {
        match c {
            Container::Bitset(words, _) => {
                for w in words.iter() {
                    out.extend_from_slice(&w.to_le_bytes());
                }
            }
            Container::Array(values) => {
                for v in values {
                    out.extend_from_slice(&v.to_le_bytes());
                }
            }
        }
    }
    Bitmap::try_deserialize::<Portable>(&out)
}

/// A bitmap of `ids`, which must be strictly increasing (containers of over 4,096 members as
/// bitsets, the others as arrays; see [`from_containers`]).
pub(crate) fn from_sorted(ids: &[u32]) -> Bitmap {
    debug_assert!(ids.windows(2).all(|w| w[0] < w[1]));
    let mut containers = Vec::new();
    let mut start = 0;
    while start < ids.len() {
        let key = ids[start] >> 16;
        let len = ids[start..].partition_point(|&v| v >> 16 == key);
        let part = &ids[start..start + len];
        let container = if len > 4096 {
            let mut words = vec![0u64; 1024];
            for &v in part {
                let low = (v & 0xffff) as usize;
                words[low / 64] |= 1 << (low % 64);
            }
            Container::Bitset(Cow::Owned(words), len as u32)
        } else {
            Container::Array(part.iter().map(|&v| v as u16).collect())
        };
        containers.push((key as u16, container));
        start += len;
    }
    // Should CRoaring disagree, insert the members one by one.
    from_containers(&containers).unwrap_or_else(|| Bitmap::of(ids))
}

/// Builds a bitmap from ids that mostly arrive in increasing order (a file sorted by user):
/// those are appended to the last container, stored as an array and turned into a bitset past
/// 4,096 members, with no sorting and no per-member insertion; the others are kept aside and
/// merged at the end.
#[cfg(feature = "import")]
#[derive(Debug, Default)]
pub(crate) struct Appender {
    containers: Vec<(u16, Container<'static>)>,
    /// The high 16 bits of the current container's members.
    key: u16,
    /// The current container's members while at most 4,096, else empty.
    low: Vec<u16>,
    /// The current container as a bitset past 4,096 members, and its member count.
    bits: Vec<u64>,
    bits_card: u32,
    /// The largest id appended.
    last: Option<u32>,
    /// Ids smaller than `last` when they came.
    late: Vec<u32>,
}

#[cfg(feature = "import")]
impl Appender {
    /// Adds `id`.
    #[inline]
    pub(crate) fn push(&mut self, id: u32) {
        match self.last {
            Some(last) if id <= last => {
                if id < last {
                    self.late.push(id);
                }
                return;
            }
            Some(_) if (id >> 16) as u16 != self.key => {
                self.close();
                self.key = (id >> 16) as u16;
            }
            None => self.key = (id >> 16) as u16,
            Some(_) => {}
        }
        self.last = Some(id);
        let low = id as u16;
        if self.bits_card > 0 {
            self.bits[low as usize / 64] |= 1 << (low % 64);
            self.bits_card += 1;
        } else if self.low.len() < 4096 {
            self.low.push(low);
        } else {
            self.bits.clear();
            self.bits.resize(1024, 0);
            for &v in self.low.iter().chain([&low]) {
                self.bits[v as usize / 64] |= 1 << (v % 64);
            }
            self.bits_card = 4097;
            self.low.clear();
        }
    }

    /// Adds every id of `ids`: while they keep increasing (repeats are skipped) they are
    /// appended to the last container (array or bitset) in one tight loop; others go through
    /// [`Appender::push`].
    pub(crate) fn extend(&mut self, ids: &[u32]) {
        let mut rest = ids;
        while let Some(&id) = rest.first() {
            // The fast case: an array container being filled with increasing ids of its key.
            match self.last {
                Some(last) if id > last && (id >> 16) as u16 == self.key && self.bits_card == 0 => {
                    let key = self.key;
                    let room = 4096 - self.low.len();
                    let mut last = last;
                    let mut taken = 0;
                    for &x in rest.iter().take(room.max(1)) {
                        if x < last || (x >> 16) as u16 != key {
                            break;
                        }
                        if x != last {
                            if self.low.len() == 4096 {
                                break;
                            }
                            self.low.push(x as u16);
                            last = x;
                        }
                        taken += 1;
                    }
                    self.last = Some(last);
                    if taken == 0 {
                        self.push(id);
                        taken = 1;
                    }
                    rest = &rest[taken..];
                }
                // A bitset container (past 4,096 members) being filled with increasing ids of
                // its key: each sets its bit.
                Some(last) if id > last && (id >> 16) as u16 == self.key && self.bits_card > 0 => {
                    let key = self.key;
                    let mut last = last;
                    let mut taken = 0;
                    for &x in rest {
                        if x < last || (x >> 16) as u16 != key {
                            break;
                        }
                        if x != last {
                            let low = x as u16;
                            self.bits[low as usize / 64] |= 1 << (low % 64);
                            self.bits_card += 1;
                            last = x;
                        }
                        taken += 1;
                    }
                    self.last = Some(last);
                    rest = &rest[taken..];
                }
                _ => {
                    self.push(id);
                    rest = &rest[1..];
                }
            }
        }
    }

    /// Moves the current container, if any, to the finished ones.
    fn close(&mut self) {
        if self.bits_card > 0 {
            let words = std::mem::take(&mut self.bits);
            self.containers.push((
                self.key,
                Container::Bitset(Cow::Owned(words), self.bits_card),
            ));
            self.bits_card = 0;
        } else if !self.low.is_empty() {
            let next = Vec::with_capacity(self.low.len());
            let low = std::mem::replace(&mut self.low, next);
            self.containers.push((self.key, Container::Array(low)));
        }
    }

    /// The bitmap of every id pushed.
    pub(crate) fn finish(mut self) -> Bitmap {
        self.close();
        let mut b = from_containers(&self.containers).unwrap_or_else(|| {
            // Should CRoaring refuse the containers, insert their members one by one.
            let mut b = Bitmap::new();
            for (key, c) in &self.containers {
                let high = u32::from(*key) << 16;
                match c {
                    Container::Array(v) => v.iter().for_each(|&l| b.add(high | u32::from(l))),
                    Container::Bitset(words, _) => {
                        for (i, &w) in words.iter().enumerate() {
                            for bit in 0..64 {
                                if w >> bit & 1 == 1 {
                                    b.add(high | (i * 64 + bit) as u32);
                                }
                            }
                        }
                    }
                }
            }
            b
        });
        if !self.late.is_empty() {
            self.late.sort_unstable();
            self.late.dedup();
            b.or_inplace(&from_sorted(&self.late));
        }
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(feature = "import")]
    use proptest::prelude::*;

    #[cfg(feature = "import")]
    proptest! {
        #![proptest_config(crate::testutil::proptest_config(128))]
        /// Increasing runs (sparse and dense containers), repeats and late ids: the same
        /// members as a set.
        #[test]
        fn appender_holds_every_pushed_id(
            runs in proptest::collection::vec(
                (0u32..300_000, 1u32..6000, 1u32..40, any::<bool>()),
                0..8,
            ),
        ) {
            let mut a = Appender::default();
            let mut model = std::collections::BTreeSet::new();
            let mut next = 0u32;
            for (k, (jump, len, step, back)) in runs.into_iter().enumerate() {
                // Mostly forward from where the last run ended; sometimes from an earlier id.
                let start = if back { jump % (next + 1) } else { next + jump % 70_000 };
                // Some ids twice in a row, as a user given the same tag twice.
                let run: Vec<u32> = (0..len)
                    .flat_map(|i| {
                        let id = start.saturating_add(i * step);
                        std::iter::repeat_n(id, 1 + usize::from(i % 7 == 3))
                    })
                    .collect();
                match k % 3 {
                    0 => run.iter().for_each(|&id| {
                        a.push(id);
                        a.push(id); // a repeat
                    }),
                    1 => a.extend(&run),
                    _ => {
                        // In two pieces, the second overlapping the first.
                        let half = run.len() / 2;
                        a.extend(&run[..half]);
                        a.extend(&run[half.saturating_sub(1)..]);
                    }
                }
                for id in run {
                    model.insert(id);
                    next = next.max(id);
                }
            }
            let b = a.finish();
            prop_assert_eq!(b.cardinality(), model.len() as u64);
            prop_assert_eq!(b.to_vec(), model.into_iter().collect::<Vec<_>>());
        }
    }

    #[test]
    fn from_sorted_matches_inserting_each_member() {
        let mut ids: Vec<u32> = (0..5000u32).map(|i| i * 3).collect(); // bitset container
        ids.extend((0..100u32).map(|i| (1 << 17) | (i * 7))); // array container
        ids.extend([u32::MAX - 1, u32::MAX]);
        let b = from_sorted(&ids);
        assert_eq!(b, Bitmap::of(&ids));
        assert_eq!(b.cardinality(), ids.len() as u64);
        assert!(from_sorted(&[]).is_empty());
    }
}
