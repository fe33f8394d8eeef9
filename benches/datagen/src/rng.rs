//! Random streams and the sampling primitives built on them.
//!
//! Every independent piece of data (an attribute column, a tag, an event-day, ...) draws from its
//! own ChaCha8 stream whose 256-bit key is derived from the master seed and the piece's identity
//! with SplitMix64. Conversions from raw `u32`/`u64` words to floats, booleans and indices are
//! written here rather than taken from `rand`'s distributions, so the output depends only on the
//! ChaCha key stream (which `rand_chacha` guarantees) and on IEEE 754 arithmetic.

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::detmath;

/// The generator every stream uses.
pub(crate) type Rng = ChaCha8Rng;

/// What a stream is for; part of its key, so streams of different kinds never coincide.
#[derive(Clone, Copy, Debug)]
#[repr(u64)]
pub(crate) enum Kind {
    Gender = 1,
    Age = 2,
    City = 3,
    Channel = 4,
    Activity = 5,
    Spend = 6,
    LastActive = 7,
    /// Membership draws of one tag (`a` = tag index).
    Tag = 16,
    /// Second stream of an overlapping tag: which of the sibling's members it keeps.
    TagOverlap = 17,
    /// The fixed catalog of tag names and densities (seed-independent).
    Catalog = 18,
    /// Membership draws of one event on one day (`a` = event, `b` = day).
    Event = 32,
    /// Per-user counts of one event on one day.
    EventCount = 33,
}

/// SplitMix64 finaliser: a bijective, well-mixing map on `u64`.
pub(crate) fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The stream for piece `(kind, a, b)` of the data generated from `seed`.
pub(crate) fn stream(seed: u64, kind: Kind, a: u64, b: u64) -> Rng {
    let mut h = mix(seed);
    for part in [kind as u64, a, b] {
        h = mix(h ^ mix(part));
    }
    let mut key = [0u8; 32];
    for (i, word) in key.chunks_exact_mut(8).enumerate() {
        word.copy_from_slice(&mix(h.wrapping_add(i as u64)).to_le_bytes());
    }
    Rng::from_seed(key)
}

const TWO_POW_53_INV: f64 = 1.0 / (1u64 << 53) as f64;
const TWO_POW_32: f64 = 4_294_967_296.0;

/// Uniform in `[0, 1)` with 53 bits.
pub(crate) fn unit(rng: &mut Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 * TWO_POW_53_INV
}

/// Uniform in `(0, 1]` with 53 bits; safe to take the logarithm of.
pub(crate) fn unit_open(rng: &mut Rng) -> f64 {
    ((rng.next_u64() >> 11) + 1) as f64 * TWO_POW_53_INV
}

/// `p` as a threshold for one `u32` draw: `u64::from(next_u32()) < threshold(p)` happens with
/// probability `p` (rounded down to a multiple of 2^-32; never for `p <= 0`, always for `p >= 1`).
pub(crate) fn threshold(p: f64) -> u64 {
    if p >= 1.0 {
        1 << 32
    } else {
        // `as` saturates negative values (and NaN) to 0.
        (p * TWO_POW_32) as u64
    }
}

/// Appends to `out` each id of `ids` for which a fresh `u32` draw is below `threshold(id)`,
/// in order. One draw per id; the loop is branch-free, so dense and unpredictable outcomes
/// cost the same as predictable ones.
pub(crate) fn keep_into(
    rng: &mut Rng,
    out: &mut Vec<u32>,
    ids: impl IntoIterator<Item = u32>,
    mut threshold: impl FnMut(u32) -> u64,
) {
    let mut buf = [0u32; 256];
    let mut k = 0;
    for id in ids {
        buf[k] = id;
        k += usize::from(u64::from(rng.next_u32()) < threshold(id));
        if k == buf.len() {
            out.extend_from_slice(&buf);
            k = 0;
        }
    }
    out.extend_from_slice(&buf[..k]);
}

/// Standard normal deviate (Marsaglia's polar method).
pub(crate) fn normal(rng: &mut Rng) -> f64 {
    loop {
        let u = 2.0 * unit(rng) - 1.0;
        let v = 2.0 * unit(rng) - 1.0;
        let s = u * u + v * v;
        if s > 0.0 && s < 1.0 {
            return u * (-2.0 * detmath::ln(s) / s).sqrt();
        }
    }
}

/// Below this probability, Bernoulli sampling jumps over non-members with geometric gaps;
/// above it, it flips one coin per candidate. Both cost about the same near this point.
pub(crate) const SKIP_BELOW: f64 = 0.08;

/// Calls `hit(i)`, in increasing order, for each `i` in `0..len` kept by an independent
/// Bernoulli(`p`) trial, `0 < p < SKIP_BELOW`, jumping over the others: the number of failures
/// before the next success is Geometric(p), `floor(ln U / ln(1 - p))` for U uniform in (0, 1].
fn skip_indices(rng: &mut Rng, len: usize, p: f64, mut hit: impl FnMut(usize)) {
    let inv_log_q = 1.0 / detmath::ln(1.0 - p);
    let mut i = 0usize;
    loop {
        let gap = (detmath::ln(unit_open(rng)) * inv_log_q).min(len as f64);
        i += gap as usize;
        if i >= len {
            return;
        }
        hit(i);
        i += 1;
    }
}

/// Each id of `0..n` independently with probability `p`, ascending.
pub(crate) fn bernoulli_range(rng: &mut Rng, n: u32, p: f64) -> Vec<u32> {
    let mut out = Vec::with_capacity(expected_len(n as usize, p));
    if p <= 0.0 {
        return out;
    }
    if p >= 1.0 {
        out.extend(0..n);
    } else if p < SKIP_BELOW {
        skip_indices(rng, n as usize, p, |i| out.push(i as u32));
    } else {
        let t = threshold(p);
        keep_into(rng, &mut out, 0..n, |_| t);
    }
    out
}

/// Each element of `list` independently with probability `p`, in list order.
pub(crate) fn bernoulli_list(rng: &mut Rng, list: &[u32], p: f64) -> Vec<u32> {
    let mut out = Vec::with_capacity(expected_len(list.len(), p));
    if p <= 0.0 {
        return out;
    }
    if p >= 1.0 {
        out.extend_from_slice(list);
    } else if p < SKIP_BELOW {
        skip_indices(rng, list.len(), p, |i| out.push(list[i]));
    } else {
        let t = threshold(p);
        keep_into(rng, &mut out, list.iter().copied(), |_| t);
    }
    out
}

/// A capacity hint: the mean plus a few standard deviations, capped at `len`.
fn expected_len(len: usize, p: f64) -> usize {
    let p = p.clamp(0.0, 1.0);
    let mean = len as f64 * p;
    ((mean + 4.0 * mean.sqrt() + 16.0) as usize).min(len)
}

/// A categorical distribution sampled by inverting its CDF, held as `u64` thresholds.
#[derive(Debug, Clone)]
pub(crate) struct Discrete {
    /// `cum[i]` = P(value <= i) scaled to 2^64; the last entry is `u64::MAX`.
    cum: Vec<u64>,
    /// `guide[j]` is the value for the smallest draw whose top `GUIDE_BITS` bits are `j`, so a
    /// sample starts there and scans forward over at most a few entries.
    guide: Vec<u32>,
    /// Normalised probabilities, for computing expectations.
    probs: Vec<f64>,
}

const GUIDE_BITS: u32 = 10;

impl Discrete {
    pub(crate) fn new(weights: &[f64]) -> Self {
        assert!(!weights.is_empty() && weights.iter().all(|w| *w >= 0.0));
        let total: f64 = weights.iter().sum();
        assert!(total > 0.0);
        let probs: Vec<f64> = weights.iter().map(|w| w / total).collect();
        let mut running = 0.0;
        let mut cum: Vec<u64> = probs
            .iter()
            .map(|p| {
                running += p;
                // `as` saturates, so a running sum that rounds above 1 maps to u64::MAX.
                (running * 18_446_744_073_709_551_616.0) as u64
            })
            .collect();
        *cum.last_mut().unwrap() = u64::MAX;
        let guide = (0..1u64 << GUIDE_BITS)
            .map(|j| Self::search(&cum, j << (64 - GUIDE_BITS)) as u32)
            .collect();
        Self { cum, guide, probs }
    }

    /// The first value whose cumulative threshold exceeds `r` (the last value for `u64::MAX`).
    fn search(cum: &[u64], r: u64) -> usize {
        cum.partition_point(|&c| c <= r).min(cum.len() - 1)
    }

    /// The value for one uniform `u64` draw: `search(cum, r)`, started from the guide table.
    pub(crate) fn sample(&self, r: u64) -> usize {
        let last = self.cum.len() - 1;
        let mut i = self.guide[(r >> (64 - GUIDE_BITS)) as usize] as usize;
        while i < last && self.cum[i] <= r {
            i += 1;
        }
        i
    }

    pub(crate) fn probs(&self) -> &[f64] {
        &self.probs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_distinct_and_reproducible() {
        let first = |seed, kind, a, b| stream(seed, kind, a, b).next_u64();
        assert_eq!(first(1, Kind::Tag, 3, 0), first(1, Kind::Tag, 3, 0));
        assert_ne!(first(1, Kind::Tag, 3, 0), first(2, Kind::Tag, 3, 0));
        assert_ne!(first(1, Kind::Tag, 3, 0), first(1, Kind::Tag, 4, 0));
        assert_ne!(first(1, Kind::Tag, 3, 0), first(1, Kind::TagOverlap, 3, 0));
        assert_ne!(first(1, Kind::Event, 3, 5), first(1, Kind::Event, 5, 3));
    }

    #[test]
    fn bernoulli_rates_on_both_paths() {
        for p in [0.0, 0.001, 0.05, SKIP_BELOW, 0.3, 0.9, 1.0] {
            let mut rng = stream(9, Kind::Tag, 0, 0);
            let n = 200_000u32;
            let got = bernoulli_range(&mut rng, n, p);
            assert!(got.windows(2).all(|w| w[0] < w[1]));
            assert!(got.iter().all(|&u| u < n));
            let mean = n as f64 * p;
            let tolerance = 5.0 * (mean * (1.0 - p)).sqrt() + 1.0;
            assert!(
                (got.len() as f64 - mean).abs() <= tolerance,
                "p={p}: {} hits, expected {mean}",
                got.len()
            );
        }
    }

    #[test]
    fn bernoulli_list_keeps_a_subset_in_order() {
        let list: Vec<u32> = (0..50_000).map(|i| i * 3 + 1).collect();
        let mut rng = stream(9, Kind::Tag, 1, 0);
        let kept = bernoulli_list(&mut rng, &list, 0.02);
        assert!(kept.windows(2).all(|w| w[0] < w[1]));
        assert!(kept.iter().all(|u| u % 3 == 1));
        assert!((700..1300).contains(&kept.len()), "{}", kept.len());
    }

    #[test]
    fn discrete_follows_weights() {
        let d = Discrete::new(&[1.0, 0.0, 3.0]);
        assert_eq!(d.sample(0), 0);
        assert_eq!(d.sample(u64::MAX), 2);
        assert_eq!(d.sample(u64::MAX / 4 - 1000), 0);
        assert_eq!(d.sample(u64::MAX / 4 + 1000), 2);
        let zipf: Vec<f64> = (1..=300).map(|k| 1.0 / f64::from(k)).collect();
        let z = Discrete::new(&zipf);
        let mut rng = stream(4, Kind::City, 0, 0);
        for _ in 0..10_000 {
            let r = rng.next_u64();
            assert_eq!(z.sample(r), Discrete::search(&z.cum, r));
        }
        let mut rng = stream(3, Kind::City, 0, 0);
        let mut counts = [0u32; 3];
        for _ in 0..40_000 {
            counts[d.sample(rng.next_u64())] += 1;
        }
        assert_eq!(counts[1], 0);
        assert!((9_300..10_700).contains(&counts[0]), "{counts:?}");
    }

    #[test]
    fn normal_has_unit_variance() {
        let mut rng = stream(5, Kind::Spend, 0, 0);
        let n = 100_000;
        let xs: Vec<f64> = (0..n).map(|_| normal(&mut rng)).collect();
        let mean = xs.iter().sum::<f64>() / n as f64;
        let var = xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n as f64;
        assert!(mean.abs() < 0.02, "mean {mean}");
        assert!((var - 1.0).abs() < 0.03, "variance {var}");
    }
}
