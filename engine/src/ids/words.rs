//! A dictionary's string keys as one number each, for looking up keys that arrive in id order.
//!
//! User keys are often of one length and share a prefix (`u0000012345`, phone numbers under
//! a country code), and a table loaded from a file sorted by user holds them in increasing
//! order. Then each key is fully described by the few bytes after the shared prefix, read as a
//! big-endian number: the numbers increase with the ids, and equal numbers are equal keys. A
//! file sorted by tag and then by user (each tag's users in id order) is resolved by walking
//! these numbers forward from the previous key's position, 8 to 64 at a time ([`Step`]),
//! instead of comparing key bytes read through their offsets
//! ([`super::IdDictionary::get_many_with`]); a hash lookup confirms its candidate by its
//! number.
//!
//! [`KeyWords`] covers the ids the dictionary held when it was built. That stays true as the
//! dictionary grows: keys are only ever appended (a failed `extend_new` removes only the keys
//! it appended itself), so a key's id and bytes never change.

use super::store::Arena;

/// Positions after the previous key a key is looked for among the numbers before the index
/// decides instead.
pub(super) const WORD_SPAN: usize = 192;

/// The average gap between the ids of consecutive keys up to which a lookup keeps following:
/// a scan reads `8 × gap` bytes per key, which at ~48 positions (~400 bytes, streamed) costs
/// about what a hash lookup's two cache misses do.
pub(super) const WORD_GAP: u32 = 48;

/// How many numbers [`KeyWords::follow`] compares in one step, given the average gap between
/// the keys looked up (`Step::for_gap`): about twice the gap, so that most keys are found in
/// the first step and its loop's exit is predicted right. Comparing more numbers than needed
/// costs a few cycles per 8; a mispredicted exit costs ~20.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    By8,
    By16,
    By32,
    By64,
}

impl Step {
    pub(super) fn for_gap(gap: u32) -> Step {
        match gap {
            0..4 => Step::By8,
            4..8 => Step::By16,
            8..16 => Step::By32,
            _ => Step::By64,
        }
    }
}

/// The keys of a string dictionary that all have one length, share a prefix and differ only
/// in the (at most 8) bytes after it, and increase with their ids: per key, those bytes as a
/// big-endian number (see the module docs). Built by [`KeyWords::build`], which refuses any
/// other dictionary.
#[derive(Debug)]
pub struct KeyWords {
    /// Every key's length.
    len: usize,
    /// The prefix every key shares.
    prefix: Box<[u8]>,
    /// Keys of 8 to 16 bytes are read as their first and last 8 bytes: the prefix's part of
    /// the first 8 (`head_mask` selects it, `head` holds it) and of the last 8 (above `low`,
    /// held in `tail`); `low` selects the number.
    head_mask: u64,
    head: u64,
    tail: u64,
    low: u64,
    /// The number of each key, by position; strictly increasing.
    words: Box<[u64]>,
}

impl KeyWords {
    /// The numbers of `arena`'s keys, or `None` when its keys are not of one length, do not
    /// differ in the last 8 bytes alone, or do not increase with their positions.
    pub(super) fn build(arena: &Arena) -> Option<KeyWords> {
        let (len, text) = arena.one_length()?;
        let n = arena.len();
        let first = text.get(..len)?;
        let last = text.get(n.checked_sub(1)? * len..n * len)?;
        let shared = first.iter().zip(last).take_while(|(a, b)| a == b).count();
        // The part that differs must fit one number.
        let prefix_len = shared.max(len.saturating_sub(8));
        let low = match len - prefix_len {
            8 => u64::MAX,
            k => (1u64 << (8 * k)) - 1,
        };
        let head_mask = match prefix_len.min(8) {
            0 => 0,
            p => u64::MAX << (8 * (8 - p)),
        };
        let (head, tail) = match (first.first_chunk::<8>(), first.last_chunk::<8>()) {
            (Some(h), Some(t)) => (
                u64::from_be_bytes(*h) & head_mask,
                u64::from_be_bytes(*t) & !low,
            ),
            _ => (0, 0),
        };
        let mut built = KeyWords {
            len,
            prefix: first.get(..prefix_len)?.into(),
            head_mask,
            head,
            tail,
            low,
            words: Box::default(),
        };
        let mut words = Vec::new();
        words.try_reserve_exact(n).ok()?;
        let mut prev = None;
        for key in text.chunks_exact(len) {
            let w = built.number(key)?;
            if prev.is_some_and(|p| p >= w) {
                return None;
            }
            prev = Some(w);
            words.push(w);
        }
        built.words = words.into_boxed_slice();
        Some(built)
    }

    /// Keys covered: the positions `0..len()`.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.words.len()
    }

    /// Whether position `i` is covered.
    #[inline(always)]
    pub(super) fn covers(&self, i: u32) -> bool {
        (i as usize) < self.words.len()
    }

    /// The number of the key at position `i` (0 past the positions covered).
    #[inline(always)]
    pub(super) fn number_at(&self, i: u32) -> u64 {
        self.words.get(i as usize).copied().unwrap_or(0)
    }

    /// Hints that the number at position `i` will be read soon.
    #[inline(always)]
    pub(super) fn prefetch(&self, i: u32) {
        super::prefetch::prefetch(&self.words, i as usize);
    }

    /// The number of `key` (what it would have among these keys), `None` if it cannot be one
    /// of them (another length, another prefix).
    #[inline(always)]
    pub(super) fn number(&self, key: &[u8]) -> Option<u64> {
        if key.len() != self.len {
            return None;
        }
        if self.len <= 16
            && let (Some(h), Some(t)) = (key.first_chunk::<8>(), key.last_chunk::<8>())
        {
            let (h, t) = (u64::from_be_bytes(*h), u64::from_be_bytes(*t));
            return (h & self.head_mask == self.head && t & !self.low == self.tail)
                .then_some(t & self.low);
        }
        let (prefix, rest) = key.split_at_checked(self.prefix.len())?;
        (*prefix == *self.prefix).then(|| rest.iter().fold(0, |w, &b| w << 8 | u64::from(b)))
    }

    /// The position of `key` if it is within [`WORD_SPAN`] positions after `from`: the numbers
    /// after `from` are compared `step` at a time, without a branch per number, up to the
    /// first not below the key's. `None` when the key is not there (absent, before `from`,
    /// further on, or not one of these keys).
    #[inline]
    pub(super) fn follow(&self, from: u32, key: &[u8], step: Step) -> Option<u32> {
        match step {
            Step::By8 => self.follow_by::<8>(from, key),
            Step::By16 => self.follow_by::<16>(from, key),
            Step::By32 => self.follow_by::<32>(from, key),
            Step::By64 => self.follow_by::<64>(from, key),
        }
    }

    #[inline(always)]
    fn follow_by<const N: usize>(&self, from: u32, key: &[u8]) -> Option<u32> {
        let w = self.number(key)?;
        let start = usize::try_from(from).ok()?.checked_add(1)?;
        let words = self.words.get(start..)?;
        let words = &words[..words.len().min(WORD_SPAN)];
        let mut at = 0;
        while let Some(lanes) = words.get(at..).and_then(|s| s.first_chunk::<N>()) {
            let below: usize = lanes.iter().map(|&x| usize::from(x < w)).sum();
            if below < N {
                return exact(words, start, at + below, w);
            }
            at += N;
        }
        let below = words[at..].iter().take_while(|&&x| x < w).count();
        exact(words, start, at + below, w)
    }
}

/// The position `start + i` if `words[i]` is `w`.
#[inline(always)]
fn exact(words: &[u64], start: usize, i: usize, w: u64) -> Option<u32> {
    if words.get(i) == Some(&w) {
        u32::try_from(start + i).ok()
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arena(keys: &[String]) -> Arena {
        let mut a = Arena::default();
        for k in keys {
            a.push(k);
        }
        a
    }

    /// The naive answer: the position of `key` among `keys[from + 1..]`, within the span.
    fn naive(keys: &[String], from: u32, key: &str) -> Option<u32> {
        let start = from as usize + 1;
        keys.iter()
            .enumerate()
            .skip(start)
            .take(WORD_SPAN)
            .find(|(_, k)| k.as_str() == key)
            .map(|(i, _)| i as u32)
    }

    #[test]
    fn refuses_keys_it_cannot_number() {
        let keys = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(KeyWords::build(&arena(&[])).is_none(), "no keys");
        assert!(
            KeyWords::build(&arena(&keys(&["a1", "a22"]))).is_none(),
            "lengths differ"
        );
        assert!(
            KeyWords::build(&arena(&keys(&["u002", "u001"]))).is_none(),
            "decreasing"
        );
        assert!(
            KeyWords::build(&arena(&keys(&["x0000000", "y0000000"]))).is_some(),
            "differing from the first byte, within 8 bytes of the end"
        );
        assert!(
            KeyWords::build(&arena(&keys(&["000000000a", "100000000a"]))).is_none(),
            "differing 10 bytes from the end"
        );
        // A key between two others that does not share their prefix breaks the order.
        assert!(KeyWords::build(&arena(&keys(&["ab1", "zz5", "ab9"]))).is_none());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// Following finds exactly what a naive scan finds, for keys of lengths under 8, of
        /// 8 to 16 bytes (read as two words) and over 16, with a prefix of any length, probes
        /// of any length and prefix, present or not.
        #[test]
        fn follows_like_a_naive_scan(
            len in prop_oneof![1usize..8, 8usize..17, 17usize..24],
            prefix_len in 0usize..24,
            picks in proptest::collection::btree_set(0u64..5_000, 1..600),
            probes in proptest::collection::vec((0u64..5_200, 0u32..700, 0usize..4), 1..200),
        ) {
            let prefix_len = prefix_len.min(len - 1);
            // The digits after a shared prefix: up to 8 of them, so the keys differ within
            // the last 8 bytes.
            let digits = (len - prefix_len).min(8);
            let limit = 10u64.pow(digits as u32);
            let key = |v: u64, lead: char| {
                let mut k: String = std::iter::repeat_n(lead, len - digits).collect();
                k.push_str(&format!("{:0digits$}", v % limit));
                k
            };
            let values: std::collections::BTreeSet<u64> = picks.iter().map(|v| v % limit).collect();
            let keys: Vec<String> = values.iter().map(|&v| key(v, 'p')).collect();
            let words = KeyWords::build(&arena(&keys));
            prop_assert!(words.is_some(), "keys of one length and prefix, increasing");
            let words = words.unwrap();
            prop_assert_eq!(words.len(), keys.len());
            for &(v, from, variant) in &probes {
                let from = from.min(keys.len() as u32);
                let probe = match variant {
                    0 => keys[v as usize % keys.len()].clone(),
                    1 => key(v, 'p'),
                    2 => key(v, 'q'),
                    _ => format!("{}x", key(v, 'p')),
                };
                for step in [Step::By8, Step::By16, Step::By32, Step::By64] {
                    prop_assert_eq!(
                        words.follow(from, probe.as_bytes(), step),
                        naive(&keys, from, &probe),
                        "probe {:?} from {} by {:?}", probe, from, step
                    );
                }
            }
        }
    }
}
