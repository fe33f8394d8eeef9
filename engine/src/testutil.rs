//! Helpers shared by the engine's unit tests.

use proptest::test_runner::{Config, RngSeed};

/// A proptest configuration with a fixed seed, so every run explores the same cases.
/// Set `PROPTEST_RNG_SEED` to explore others.
pub(crate) fn proptest_config(cases: u32) -> Config {
    let seed = std::env::var("PROPTEST_RNG_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x005e_ed0f_9047_2a17);
    Config {
        cases,
        rng_seed: RngSeed::Fixed(seed),
        failure_persistence: None,
        ..Config::default()
    }
}

/// Each user's count of event `field` on `day` in `shard`, by id: 1 for being in the day's
/// bitmap, plus the count slices (count - 1, bit-sliced) the user is in.
#[cfg(feature = "import")]
pub(crate) fn event_counts(
    field: &crate::table::FieldRef<'_>,
    shard: u32,
    day: i32,
) -> std::collections::BTreeMap<u32, u32> {
    let Some(users) = field.event_day_in(shard, day).unwrap() else {
        return Default::default();
    };
    let slices = field.event_count_slices_in(shard, day).unwrap();
    users
        .iter()
        .map(|id| {
            let extra: u32 = slices
                .iter()
                .filter(|(_, b)| b.contains(id))
                .map(|(bit, _)| 1 << bit)
                .sum();
            (id, 1 + extra)
        })
        .collect()
}
