//! Funnels: how many users go through ordered steps within a window of days.
//!
//! # Semantics (exact at day granularity)
//! A user *reaches step i* (1-based) when there are days `d1 <= d2 <= … <= di` such that
//! - the user did step `j`'s event on day `dj`, for every `j <= i`;
//! - `d1` is in the query's range of start days `[first, last]`;
//! - `di - d1 <= window` (the window counts days *after* the first step).
//!
//! Several steps may fall on the same day, in step order. This is what ClickHouse's
//! `windowFunnel(window)(day, e = s1, e = s2, …)` computes on `Date` timestamps with rows per
//! (user, event, day), when the first condition also requires `day BETWEEN first AND last`:
//! it sorts a user's events by (timestamp, step) and keeps, per step, the latest start that
//! reached it, which reaches a step exactly when some chain as above exists. Counts are of
//! users reaching *at least* step i, so they never grow from one step to the next.
//!
//! # Evaluation
//! Per shard, one container block (65,536 users) at a time, the way ClickHouse evaluates it:
//! per user and step, the latest start day from which the user reached the step so far (a
//! later start leaves more of the window, so it is the only one worth keeping). The stored
//! (step, day) containers are applied once each, days in ascending order and steps in order
//! within a day (so one day can advance several steps): step 1 on a start day sets the start
//! of the crowd's users who did it; step `i` on day `t` gives the users who did it the start
//! of step `i - 1`, if that start is on or after `t - window`. A user reaches a step when it
//! holds a start for it at the end; shards add up. Starts are day offsets in a byte per user
//! and step (see [`latest`]): bitset containers update 64 users at a time (with AVX-512BW a
//! bitmap word is the mask of 64 byte lanes), array containers member by member, a slice of
//! 4,096 users at a time (every container's members of a slice, then the next slice, so that
//! the slice's bytes stay in L1), and the blocks of a shard run as parallel tasks.
//!
//! When the days span more than [`latest::MAX_SPAN`] days, or the CPU lacks AVX-512BW (the
//! portable levels apply bitsets member by member, about 4x slower on the benchmark), the
//! chains are followed instead from each start day `s`: the users who did step 1 on `s`
//! (within the crowd) are level 1; then for each day `t` from `s` to `s + window`, level `i`
//! gains the users of level `i-1` who did step `i` on `t`; a user's best level over all
//! starts is the answer. The levels of 4,096 users at a time stay in vector registers (see
//! `follow`).

use croaring::{Bitmap, Portable};
use rayon::prelude::*;

use super::dense::Dense;
use super::latest::{self, Levels, Members, Simd, Update};
use super::{DayRange, Split, event_field};
use crate::SHARD_BITS;
use crate::bitmap::dispatched;
use crate::bitmap::portable::{BLOCK_WORDS, Blocks, Cont, Directory, chunk_at, word};
use crate::error::{Error, Result};
use crate::query::Crowd;
use crate::table::FieldRef;

/// The most steps a funnel may have.
pub const MAX_FUNNEL_STEPS: usize = 32;
/// The longest window, in days.
pub const MAX_FUNNEL_WINDOW: u32 = 3_660;
/// The most (step, stored day) pairs one funnel reads per shard (each may take an 8 KiB scratch
/// block while a container block is processed): bounds the work and memory of a funnel over
/// many steps and a long span of days.
pub const MAX_FUNNEL_STEP_DAYS: usize = 2_048;

/// A funnel question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunnelQuery {
    /// The event of each step, in order (2 to [`MAX_FUNNEL_STEPS`]).
    pub steps: Vec<String>,
    /// Days the last step may come after the first.
    pub window: u32,
    /// The days the first step may happen on.
    pub starts: DayRange,
    /// Optional enum or set dimension to break the funnel down by.
    pub split: Option<String>,
}

/// The funnel of one group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunnelRow {
    /// The split group's value (`None` without a split).
    pub group: Option<String>,
    /// `reached[i]`: users reaching at least step `i + 1`.
    pub reached: Vec<u64>,
}

impl FunnelRow {
    /// Share of the previous step's users reaching step `i` (1 for the first step with users).
    pub fn conversion(&self, i: usize) -> f64 {
        match i {
            0 => f64::from(u8::from(self.reached.first().is_some_and(|&n| n > 0))),
            _ => ratio(self.reached[i], self.reached[i - 1]),
        }
    }

    /// Share of the first step's users reaching step `i`.
    pub fn overall(&self, i: usize) -> f64 {
        ratio(self.reached[i], self.reached[0])
    }

    /// Users of step `i` who did not reach step `i + 1` (0 for the last step).
    pub fn drop_off(&self, i: usize) -> u64 {
        match self.reached.get(i + 1) {
            Some(&next) => self.reached[i] - next,
            None => 0,
        }
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

impl<'s> Crowd<'s> {
    /// The funnel of this crowd (see the module documentation for the semantics).
    pub fn funnel(&self, q: &FunnelQuery) -> Result<Vec<FunnelRow>> {
        let snap = self.snap;
        if q.steps.len() < 2 || q.steps.len() > MAX_FUNNEL_STEPS {
            return Err(Error::InvalidArgument(format!(
                "a funnel has 2 to {MAX_FUNNEL_STEPS} steps, got {}",
                q.steps.len()
            )));
        }
        if q.window > MAX_FUNNEL_WINDOW {
            return Err(Error::InvalidArgument(format!(
                "a funnel window is at most {MAX_FUNNEL_WINDOW} days, got {}",
                q.window
            )));
        }
        if q.starts.is_empty() {
            return Err(Error::InvalidArgument(
                "the range of start days ends before it starts".into(),
            ));
        }
        let steps: Vec<FieldRef<'s>> = q
            .steps
            .iter()
            .map(|e| event_field(snap, e))
            .collect::<Result<_>>()?;
        let split = Split::new(snap, q.split.as_deref(), self.as_of)?;
        let names = split.names();
        let start_days: Vec<i32> = steps[0]
            .event_days()
            .iter()
            .copied()
            .filter(|&d| q.starts.contains(d))
            .collect();
        if let (Some(&first), Some(&last)) = (start_days.first(), start_days.last()) {
            let end = last.saturating_add(q.window as i32);
            let step_days: usize = steps
                .iter()
                .map(|s| {
                    s.event_days()
                        .iter()
                        .filter(|&&d| first <= d && d <= end)
                        .count()
                })
                .sum();
            if step_days > MAX_FUNNEL_STEP_DAYS {
                return Err(Error::LimitExceeded(format!(
                    "the funnel spans {step_days} (step, day) pairs, more than {MAX_FUNNEL_STEP_DAYS}; narrow the start days or the window, or use fewer steps"
                )));
            }
        }
        let per_shard: Vec<Vec<Vec<u64>>> = (0..snap.shards())
            .into_par_iter()
            .map(|shard| -> Result<Vec<Vec<u64>>> {
                let crowd = self.shard_bitmap(shard)?;
                let keep = q.split.is_some();
                let reached = reached_in(&steps, shard, &start_days, q.window, &crowd, keep)?;
                let Some(reached) = reached.users else {
                    return Ok(vec![reached.counts]);
                };
                split
                    .groups(shard, &crowd)?
                    .iter()
                    .map(|g| {
                        let g = Dense::from_bitmap(g, shard);
                        Ok(reached.iter().map(|r| r.and_count(&g)).collect())
                    })
                    .collect()
            })
            .collect::<Result<_>>()?;
        Ok(names
            .into_iter()
            .enumerate()
            .map(|(gi, group)| FunnelRow {
                group,
                reached: (0..steps.len())
                    .map(|i| per_shard.iter().map(|s| s[gi][i]).sum())
                    .collect(),
            })
            .collect())
    }
}

/// Per step, how many users of a shard's crowd reach it, and (when asked) who.
struct Reached {
    counts: Vec<u64>,
    users: Option<Vec<Dense>>,
}

/// Per step, the users of `crowd` in `shard` reaching it: counted, and kept as dense bit
/// vectors if `keep`.
///
/// Every (step, day) bitmap the funnel can touch is indexed in place (its containers found,
/// nothing copied), then the shard is walked one container block (65,536 users) at a time,
/// bitset and array containers read straight from the segment (see [`by_latest_start`], or
/// [`by_chains`] for long spans of days and CPUs without AVX-512BW). Memory traffic is one
/// read of the stored day bitmaps; no shard-sized vector is written except the per-step
/// results.
fn reached_in(
    steps: &[FieldRef<'_>],
    shard: u32,
    start_days: &[i32],
    window: u32,
    crowd: &Bitmap,
    keep: bool,
) -> Result<Reached> {
    let k = steps.len();
    let mut reached = Reached {
        counts: vec![0; k],
        users: keep.then(|| (0..k).map(|_| Dense::zero()).collect()),
    };
    let (Some(&first_day), Some(&last_start)) = (start_days.first(), start_days.last()) else {
        return Ok(reached);
    };
    let last_day = last_start.saturating_add(window as i32);
    let span = (last_day - first_day + 1) as usize;
    // dirs[i * span + (t - first_day)]: step i's users on day t (None: nobody).
    let mut dirs: Vec<Option<Directory<'_>>> = Vec::with_capacity(k * span);
    for (i, step) in steps.iter().enumerate() {
        for t in first_day..=last_day {
            // Step 1 only matters on start days.
            let needed = i > 0 || start_days.binary_search(&t).is_ok();
            let blob = if needed {
                step.event_day_blob_in(shard, t)?
            } else {
                None
            };
            dirs.push(match blob {
                Some(blob) => {
                    Some(Directory::parse(blob.bytes).map_err(|what| {
                        Error::corrupt(blob.path, format!("event bitmap: {what}"))
                    })?)
                }
                None => None,
            });
        }
    }
    let crowd_bytes = crowd.serialize::<Portable>();
    let crowd_dir = Directory::parse(&crowd_bytes)
        .map_err(|what| Error::corrupt("(memory)", format!("crowd bitmap: {what}")))?;
    let days = Days {
        dirs: &dirs,
        span,
        first_day,
        start_days,
        window: window as usize,
    };
    // Without AVX-512BW the levels take bitsets member by member, several times slower than
    // the chains' vector passes on dense days.
    let simd = Simd::detect();
    if span <= latest::MAX_SPAN && simd != Simd::Portable {
        by_latest_start(&days, shard, &crowd_dir, simd, &mut reached);
    } else {
        by_chains(&days, shard, &crowd_dir, &mut reached);
    }
    Ok(reached)
}

/// The stored day bitmaps a funnel reads in one shard.
struct Days<'d, 'b> {
    /// `dirs[i * span + t]`: step `i`'s users on day `first_day + t` (None: nobody, or not
    /// needed).
    dirs: &'d [Option<Directory<'b>>],
    span: usize,
    first_day: i32,
    start_days: &'d [i32],
    window: usize,
}

/// [`reached_in`] day by day, keeping per user and step the latest start that reaches it
/// (see [`latest`]): each stored (step, day) container is applied once, in day order and step
/// order within a day, bitsets 64 users at a time and arrays member by member; nothing is
/// expanded but the rare run containers. The span of days must be at most
/// [`latest::MAX_SPAN`]. Groups of [`LATEST_TASK_BLOCKS`] blocks run as parallel tasks, so
/// that the cores share the last shards evenly.
fn by_latest_start(
    days: &Days<'_, '_>,
    shard: u32,
    crowd_dir: &Directory<'_>,
    simd: Simd,
    reached: &mut Reached,
) {
    let k = reached.counts.len();
    let blocks = 1usize << (SHARD_BITS - 16);
    let tasks = blocks.div_ceil(LATEST_TASK_BLOCKS);
    // Each task's part of the users of every step, when kept.
    let mut parts: Vec<Vec<&mut [u64]>> = (0..tasks).map(|_| Vec::with_capacity(k)).collect();
    if let Some(users) = &mut reached.users {
        for d in users.iter_mut() {
            for (p, words) in parts
                .iter_mut()
                .zip(d.words.chunks_mut(LATEST_TASK_BLOCKS * BLOCK_WORDS))
            {
                p.push(words);
            }
        }
    }
    let counts: Vec<Vec<u64>> = parts
        .into_par_iter()
        .enumerate()
        .map(|(task, mut users)| {
            let first = task * LATEST_TASK_BLOCKS;
            let range = first..(first + LATEST_TASK_BLOCKS).min(blocks);
            let mut counts = vec![0u64; k];
            let mut levels = Levels::new(k, simd);
            let mut scratch = Blocks::default();
            let mut out = [0u64; BLOCK_WORDS];
            for block in range {
                let key = ((shard << (SHARD_BITS - 16)) as usize + block) as u16;
                if !latest_block(days, key, crowd_dir, &mut levels, &mut scratch) {
                    continue;
                }
                let w = (block - first) * BLOCK_WORDS;
                for (i, n) in counts.iter_mut().enumerate() {
                    *n += levels.take(i, &mut out);
                    if let Some(words) = users.get_mut(i) {
                        words[w..w + BLOCK_WORDS].copy_from_slice(&out);
                    }
                }
            }
            counts
        })
        .collect();
    for c in counts {
        for (n, c) in reached.counts.iter_mut().zip(c) {
            *n += c;
        }
    }
}

/// Blocks of a task of [`by_latest_start`].
const LATEST_TASK_BLOCKS: usize = 4;

/// Leaves in `levels` (empty) the latest starts of the users of block `key` reaching each
/// step; false (and `levels` untouched) when the crowd has nobody there.
fn latest_block(
    days: &Days<'_, '_>,
    key: u16,
    crowd_dir: &Directory<'_>,
    levels: &mut Levels,
    scratch: &mut Blocks,
) -> bool {
    let span = days.span;
    let k = days.dirs.len() / span;
    if crowd_dir.get(key).is_none() {
        return false;
    }
    let mut conts: Vec<Option<Cont<'_>>> = days
        .dirs
        .iter()
        .map(|d| d.as_ref().and_then(|d| d.get(key)))
        .collect();
    // The crowd and the rare run containers are expanded into blocks, then read as bitsets.
    let runs: Vec<usize> = (0..conts.len())
        .filter(|&x| matches!(conts[x], Some(Cont::Run(_))))
        .collect();
    let mut expand: Vec<&Directory<'_>> = vec![crowd_dir];
    expand.extend(
        runs.iter()
            .map(|&x| days.dirs[x].as_ref().expect("a container")),
    );
    let loaded = scratch.load(&expand, key);
    let Some(crowd) = loaded[0] else {
        return false;
    };
    for (&x, bytes) in runs.iter().zip(&loaded[1..]) {
        conts[x] = bytes.map(Cont::Bitset);
    }
    // The updates in order: days, then steps (one day can advance several steps).
    let mut updates: Vec<Update<'_>> = Vec::with_capacity(conts.len());
    for t in 0..span {
        for i in 0..k {
            let members = match conts[i * span + t] {
                Some(Cont::Bitset(bytes)) => Members::words(bytes),
                Some(Cont::Array(values)) => Members::Sorted(values),
                Some(Cont::Run(_)) => unreachable!("runs were expanded"),
                None => continue,
            };
            updates.push(Update { t, i, members });
        }
    }
    levels.apply(&mut updates, crowd, days.window);
    true
}

/// [`reached_in`] start by start, following the chains from each (see [`follow`]), for spans
/// of days too long for [`by_latest_start`]: bitset containers are read in place, array and
/// run containers expanded into scratch blocks that stay in cache.
fn by_chains(days: &Days<'_, '_>, shard: u32, crowd_dir: &Directory<'_>, reached: &mut Reached) {
    let k = reached.counts.len();
    let (span, first_day) = (days.span, days.first_day);
    let dirs = days.dirs;
    // The inputs of `Blocks::load`: the crowd, then every (step, day) with users.
    let present: Vec<usize> = (0..dirs.len()).filter(|&x| dirs[x].is_some()).collect();
    let mut inputs: Vec<&Directory<'_>> = vec![crowd_dir];
    inputs.extend(dirs.iter().flatten());
    let mut blocks = Blocks::default();
    let zero = [0u64; CHUNK];
    let starts: Vec<usize> = days
        .start_days
        .iter()
        .map(|&s| (s - first_day) as usize)
        .collect();
    let mut levels = vec![[0u64; CHUNK]; k];
    let mut best = vec![[0u64; CHUNK]; k];
    let first_key = shard << (SHARD_BITS - 16);
    for block in 0..1u32 << (SHARD_BITS - 16) {
        let key = (first_key + block) as u16;
        if crowd_dir.get(key).is_none() {
            continue;
        }
        let loaded = blocks.load(&inputs, key);
        let Some(crowd_block) = loaded[0] else {
            continue;
        };
        let mut day_blocks: Vec<Option<&[u8]>> = vec![None; k * span];
        for (x, &at) in present.iter().zip(&loaded[1..]) {
            day_blocks[*x] = at;
        }
        for at in (0..BLOCK_WORDS).step_by(CHUNK) {
            let mut c = zero;
            for (j, w) in c.iter_mut().enumerate() {
                *w = word(crowd_block, at + j);
            }
            if c.iter().all(|&x| x == 0) {
                continue;
            }
            let chunk = Chunk {
                crowd: &c,
                days: &day_blocks,
                at,
                span,
                starts: &starts,
                window: days.window,
            };
            follow(&chunk, &mut levels, &mut best);
            for (n, b) in reached.counts.iter_mut().zip(&best) {
                *n += b.iter().map(|w| u64::from(w.count_ones())).sum::<u64>();
            }
            if let Some(users) = &mut reached.users {
                let w = block as usize * BLOCK_WORDS + at;
                for (r, b) in users.iter_mut().zip(&best) {
                    r.words[w..w + CHUNK].copy_from_slice(b);
                }
            }
        }
    }
}

/// Users followed together: 64 words (4,096 users). Measured faster than 32 words (which
/// would keep a four-step funnel's levels in AVX-512's 32 vector registers): fewer passes over
/// each start's day blocks outweigh the spills.
const CHUNK: usize = 64;

/// One chunk of users of one container block, and what its chains are followed through.
struct Chunk<'c> {
    /// The crowd's users of the chunk.
    crowd: &'c [u64; CHUNK],
    /// `days[i * span + t]`: the container block of step `i` on day `t` (from the first day).
    days: &'c [Option<&'c [u8]>],
    /// The chunk's first word in its block.
    at: usize,
    span: usize,
    /// The start days (from the first day), ascending.
    starts: &'c [usize],
    window: usize,
}

dispatched! {
    /// Follows the chains of one chunk from every start: `best[i]` becomes the users reaching
    /// step `i + 1` (`levels` is scratch space for funnels of more than 8 steps).
    ///
    /// Specialized by the number of steps so that the levels are registers, and run in an
    /// AVX-512 or AVX2 build where the CPU has one: these passes are most of a funnel's cost.
    fn follow / follow_avx512 / follow_avx2 = follow_by_steps(
        chunk: &Chunk<'_>,
        levels: &mut [[u64; CHUNK]],
        best: &mut [[u64; CHUNK]]
    )
}

#[inline(always)]
fn follow_by_steps(chunk: &Chunk<'_>, levels: &mut [[u64; CHUNK]], best: &mut [[u64; CHUNK]]) {
    match best.len() {
        2 => follow_fixed::<2>(chunk, best),
        3 => follow_fixed::<3>(chunk, best),
        4 => follow_fixed::<4>(chunk, best),
        5 => follow_fixed::<5>(chunk, best),
        6 => follow_fixed::<6>(chunk, best),
        7 => follow_fixed::<7>(chunk, best),
        8 => follow_fixed::<8>(chunk, best),
        _ => follow_dynamic(chunk, levels, best),
    }
}

/// [`follow`] for `K` steps, the levels in local arrays the compiler keeps in registers.
#[inline(always)]
fn follow_fixed<const K: usize>(chunk: &Chunk<'_>, best: &mut [[u64; CHUNK]]) {
    let (c, at, span) = (chunk.crowd, chunk.at, chunk.span);
    let mut top = [[0u64; CHUNK]; K];
    for &si in chunk.starts {
        let Some(d0) = chunk.days[si] else { continue };
        let d0 = chunk_at::<{ CHUNK * 8 }>(d0, at);
        let mut level = [[0u64; CHUNK]; K];
        let mut any = 0u64;
        for j in 0..CHUNK {
            // Users who already reached the last step from another start cannot do better.
            level[0][j] = word(d0, j) & c[j] & !top[K - 1][j];
            any |= level[0][j];
        }
        if any == 0 {
            continue;
        }
        let end = (si + chunk.window).min(span - 1);
        // Days outer, steps inner (in order): one day can advance several steps.
        for t in si..=end {
            for i in 1..K {
                if let Some(d) = chunk.days[i * span + t] {
                    let did = chunk_at::<{ CHUNK * 8 }>(d, at);
                    let (lower, upper) = level.split_at_mut(i);
                    let (prev, cur) = (&lower[i - 1], &mut upper[0]);
                    for j in 0..CHUNK {
                        cur[j] |= prev[j] & word(did, j);
                    }
                }
            }
        }
        for i in 0..K {
            for j in 0..CHUNK {
                top[i][j] |= level[i][j];
            }
        }
    }
    best[..K].copy_from_slice(&top);
}

/// [`follow`] for any number of steps, the levels in `levels`.
#[inline(always)]
fn follow_dynamic(chunk: &Chunk<'_>, levels: &mut [[u64; CHUNK]], best: &mut [[u64; CHUNK]]) {
    let zero = [0u64; CHUNK];
    let k = levels.len();
    let (c, at, span) = (chunk.crowd, chunk.at, chunk.span);
    for b in best.iter_mut() {
        *b = zero;
    }
    for &si in chunk.starts {
        let Some(d0) = chunk.days[si] else { continue };
        let d0 = chunk_at::<{ CHUNK * 8 }>(d0, at);
        let done = &best[k - 1];
        let mut l0 = zero;
        let mut any = 0u64;
        for j in 0..CHUNK {
            l0[j] = word(d0, j) & c[j] & !done[j];
            any |= l0[j];
        }
        if any == 0 {
            continue;
        }
        levels[0] = l0;
        for l in levels[1..].iter_mut() {
            *l = zero;
        }
        // live[i]: level i holds somebody, so step i + 1 can gain from it.
        let mut live = [false; MAX_FUNNEL_STEPS];
        live[0] = true;
        let end = (si + chunk.window).min(span - 1);
        for t in si..=end {
            for i in 1..k {
                if !live[i - 1] {
                    break;
                }
                let Some(d) = chunk.days[i * span + t] else {
                    continue;
                };
                let did = chunk_at::<{ CHUNK * 8 }>(d, at);
                let (lower, upper) = levels.split_at_mut(i);
                let (prev, level) = (&lower[i - 1], &mut upper[0]);
                let mut any = 0u64;
                for j in 0..CHUNK {
                    level[j] |= prev[j] & word(did, j);
                    any |= level[j];
                }
                live[i] = any != 0;
            }
        }
        for (b, l) in best.iter_mut().zip(levels.iter()) {
            for j in 0..CHUNK {
                b[j] |= l[j];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Random sparse-to-dense bytes of one chunk position, as a whole block.
    fn block(seed: u64, density: u32) -> Vec<u8> {
        let mut x = seed | 1;
        (0..BLOCK_WORDS * 8)
            .map(|_| {
                let mut b = 0u8;
                for bit in 0..8 {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    if (x % 100) < u64::from(density) {
                        b |= 1 << bit;
                    }
                }
                b
            })
            .collect()
    }

    /// A bitmap of random users of the first two blocks (`density` in 1,000), as bitsets,
    /// arrays, or runs.
    fn users(seed: u64, density: u64, runs: bool) -> Bitmap {
        let mut x = seed | 1;
        let mut ids = Vec::new();
        for id in 0..2 << 16 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if x % 1000 < density {
                ids.push(id);
            }
        }
        let mut b = Bitmap::of(&ids);
        if runs {
            b.add_range(70_000..75_000);
            b.run_optimize();
        }
        b
    }

    proptest! {
        #![proptest_config(crate::testutil::proptest_config(24))]

        /// Both evaluations, latest start per user (with every build of its kernels) and the
        /// chains from each start, find the same users at every step.
        #[test]
        fn evaluations_agree(
            k in 2usize..6,
            last_start in 0usize..8,
            window in 0usize..6,
            seed in any::<u64>(),
            densities in prop::collection::vec(prop_oneof![1u64..40, 40u64..600], 1..8),
            missing in any::<u64>(),
            start_days in any::<u64>(),
            runs in any::<u64>(),
            crowd_density in prop_oneof![Just(1000u64), 100u64..1000],
        ) {
            let span = last_start + window + 1;
            let starts: Vec<i32> = (0..=last_start)
                .filter(|&s| s == 0 || s == last_start || start_days >> s & 1 == 1)
                .map(|s| s as i32)
                .collect();
            let bytes: Vec<Option<Vec<u8>>> = (0..k * span)
                .map(|x| {
                    let (i, t) = (x / span, x % span);
                    let needed = i > 0 || starts.contains(&(t as i32));
                    let present = missing >> (x % 64) & 1 == 0 || x == 0;
                    let seed = seed.wrapping_add(x as u64 * 7919);
                    let density = densities[x % densities.len()];
                    (needed && present)
                        .then(|| users(seed, density, runs >> (x % 64) & 1 == 1).serialize::<Portable>())
                })
                .collect();
            let dirs: Vec<Option<Directory<'_>>> = bytes
                .iter()
                .map(|b| b.as_ref().map(|b| Directory::parse(b).unwrap()))
                .collect();
            let crowd = users(!seed, crowd_density, false).serialize::<Portable>();
            let crowd = Directory::parse(&crowd).unwrap();
            let days = Days { dirs: &dirs, span, first_day: 0, start_days: &starts, window };
            let fresh = || Reached {
                counts: vec![0; k],
                users: Some((0..k).map(|_| Dense::zero()).collect()),
            };
            let mut want = fresh();
            by_chains(&days, 0, &crowd, &mut want);
            let mut simds = vec![Simd::Portable, Simd::detect()];
            simds.dedup();
            for simd in simds {
                let mut got = fresh();
                by_latest_start(&days, 0, &crowd, simd, &mut got);
                prop_assert_eq!(&got.counts, &want.counts, "{:?}", simd);
                for (g, w) in got.users.iter().flatten().zip(want.users.iter().flatten()) {
                    prop_assert!(g.words == w.words, "{:?}", simd);
                }
            }
        }

        /// Every build of the chain-following kernel (generic, AVX2, AVX-512; specialized by
        /// step count or not) gives the same levels.
        #[test]
        fn kernel_builds_agree(
            k in 2usize..11,
            span in 1usize..6,
            window in 0usize..5,
            seed in any::<u64>(),
            density in 1u32..90,
            missing in any::<u64>(),
        ) {
            let blocks: Vec<Vec<u8>> = (0..k * span)
                .map(|x| block(seed.wrapping_add(x as u64 * 7919), density))
                .collect();
            let days: Vec<Option<&[u8]>> = blocks
                .iter()
                .enumerate()
                .map(|(x, b)| (missing >> (x % 64) & 1 == 0).then_some(b.as_slice()))
                .collect();
            let crowd_block = block(seed ^ 0xABCD, 70);
            let starts: Vec<usize> = (0..span).filter(|s| seed >> s & 1 == 1).collect();
            for at in [0, BLOCK_WORDS - CHUNK] {
                let c: [u64; CHUNK] = std::array::from_fn(|j| word(&crowd_block, at + j));
                let chunk = Chunk { crowd: &c, days: &days, at, span, starts: &starts, window };
                let mut levels = vec![[0u64; CHUNK]; k];
                let mut want = vec![[0u64; CHUNK]; k];
                follow_dynamic(&chunk, &mut levels, &mut want);
                let mut got = vec![[7u64; CHUNK]; k];
                follow_by_steps(&chunk, &mut levels, &mut got);
                prop_assert_eq!(&got, &want);
                #[cfg(target_arch = "x86_64")]
                {
                    if std::arch::is_x86_feature_detected!("avx2") {
                        let mut got = vec![[7u64; CHUNK]; k];
                        // SAFETY: the CPU has AVX2.
                        unsafe { follow_avx2(&chunk, &mut levels, &mut got) };
                        prop_assert_eq!(&got, &want);
                    }
                    if std::arch::is_x86_feature_detected!("avx512f")
                        && std::arch::is_x86_feature_detected!("avx512vpopcntdq")
                    {
                        let mut got = vec![[7u64; CHUNK]; k];
                        // SAFETY: the CPU has both features of that build.
                        unsafe { follow_avx512(&chunk, &mut levels, &mut got) };
                        prop_assert_eq!(&got, &want);
                    }
                }
            }
        }
    }
}
