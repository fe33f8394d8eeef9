//! Bitmap algorithms over CRoaring bitmaps, owned or zero-copy views alike.
//!
//! - [`bsi`]: bit-sliced indexes for numeric fields: range predicates and aggregates.

pub mod bsi;

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

#[cfg(test)]
mod tests {
    use super::*;

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
