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
