//! Bitmap algorithms over CRoaring bitmaps, owned or zero-copy views alike.
//!
//! - [`bsi`]: bit-sliced indexes for numeric fields: range predicates and aggregates.

pub mod bsi;

use croaring::{Bitmap, Portable};

/// The cookie of CRoaring's portable format without run containers.
const NO_RUN_COOKIE: u32 = 12346;

/// A bitmap of `ids`, which must be strictly increasing: written in CRoaring's portable format
/// (containers of over 4,096 members as bitsets, the others as arrays) and read back, which
/// costs a copy per member instead of an insertion.
pub(crate) fn from_sorted(ids: &[u32]) -> Bitmap {
    debug_assert!(ids.windows(2).all(|w| w[0] < w[1]));
    // (high 16 bits, start in `ids`, members)
    let mut groups: Vec<(u16, usize, usize)> = Vec::new();
    let mut start = 0;
    while start < ids.len() {
        let key = ids[start] >> 16;
        let len = ids[start..].partition_point(|&v| v >> 16 == key);
        groups.push((key as u16, start, len));
        start += len;
    }
    let n = groups.len();
    let size = |len: usize| if len > 4096 { 8192 } else { len * 2 };
    let body: usize = groups.iter().map(|g| size(g.2)).sum();
    let mut out = Vec::with_capacity(8 + n * 8 + body);
    out.extend_from_slice(&NO_RUN_COOKIE.to_le_bytes());
    out.extend_from_slice(&(n as u32).to_le_bytes());
    for &(key, _, len) in &groups {
        out.extend_from_slice(&key.to_le_bytes());
        out.extend_from_slice(&((len - 1) as u16).to_le_bytes());
    }
    let mut offset = 8 + n * 8;
    for &(_, _, len) in &groups {
        out.extend_from_slice(&(offset as u32).to_le_bytes());
        offset += size(len);
    }
    for &(_, start, len) in &groups {
        let part = &ids[start..start + len];
        if len > 4096 {
            let mut words = [0u64; 1024];
            for &v in part {
                let low = (v & 0xffff) as usize;
                words[low / 64] |= 1 << (low % 64);
            }
            for w in words {
                out.extend_from_slice(&w.to_le_bytes());
            }
        } else {
            for &v in part {
                out.extend_from_slice(&(v as u16).to_le_bytes());
            }
        }
    }
    // Well-formed by construction; should CRoaring disagree, insert the members one by one.
    Bitmap::try_deserialize::<Portable>(&out).unwrap_or_else(|| Bitmap::of(ids))
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
