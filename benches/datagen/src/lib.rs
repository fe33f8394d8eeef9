//! Deterministic synthetic user-profile data for Portrait's benchmarks.
//!
//! A [`Generator`] of `N` users and a seed produces the same bytes on every machine: each
//! independent piece (an attribute column, a tag, an event on a day) draws from its own ChaCha8
//! stream keyed by the master seed and the piece's identity, so pieces can be generated alone and
//! in any order; samplers use only IEEE-exact arithmetic (see `detmath`), never the platform
//! libm. The tag catalog ([`tags`]) is the same for every seed and size; the data depend on
//! both the seed and `N` (registration days, for one, are spread over the ids `0..N`). The
//! `output_is_pinned` test fails if any output changes.
//!
//! ```
//! use portrait_datagen::{Event, Generator, REFERENCE_DAY, tag_index};
//!
//! let g = Generator::new(42, 10_000);
//! let attrs = g.attributes();
//! let runners = g.tag_members(tag_index("interest/sports/running").unwrap());
//! let buyers = g.event_members(Event::Purchase, REFERENCE_DAY);
//! assert_eq!(attrs.len(), 10_000);
//! assert!(runners.windows(2).all(|w| w[0] < w[1]));
//! assert!(buyers.iter().all(|&u| attrs.registered_day[u as usize] <= REFERENCE_DAY));
//! ```
//!
//! # Users
//! Dense ids `0..N`, assigned in sign-up order; external keys `u{id:010}` ([`key`]).
//!
//! # Attributes ([`Generator::attributes`])
//! Gender, age and city are independent of each other; the rest depend on a latent per-user
//! engagement propensity `a = U^2.5` (mean 0.29, most users barely engaged).
//! - `gender`: [`GENDERS`] with probabilities 0.49 / 0.48 / 0.03.
//! - `age`: 14–80, `age - 7.5 ~ LogNormal(ln 19, 0.55)` discretised to whole years and
//!   truncated to the range (median ≈ 27; ≈11 % aged 14–17, ≈3 % aged 60+).
//! - `city`: 300 cities ([`city_names`]), Zipf with `s = 1.0` (`P(k) ∝ 1/(k+1)`); tiers by
//!   popularity rank: tier 1 = the top 4 (≈33 % of users), tier 2 = ranks 4–29, tier 3 = 30–99,
//!   tier 4 = the rest ([`city_tier`]).
//! - `province`: one of 34 [`PROVINCES`], a fixed function of the city ([`city_province`]).
//! - `channel`: 20 [`CHANNELS`], Zipf with `s = 1.2`.
//! - `registered_day`: days since 1970-01-01 over the three years ending at [`REFERENCE_DAY`]
//!   (2026-11-25); non-decreasing in the id, with the daily sign-up rate growing linearly to
//!   twice its initial value.
//! - `spend_cents`: 0 for non-payers (≈59 %; a user pays with probability `0.15 + 0.9 a`),
//!   otherwise `LogNormal(ln 12 000 + 0.8 (a - 0.29), 1.6)` cents (payers' median ≈ 139.00).
//! - `vip`: 0–5, the number of spend thresholds reached (500, 2 000, 8 000, 30 000, 100 000
//!   yuan), one level lower for a random quarter of those reaching any; ≈93 % are at 0.
//! - `last_active_day`: the last `login` day in the event window; otherwise (no login in the
//!   window) a day between registration and the window, nearer the window for engaged users:
//!   `window_start - 1 - floor(span * U^(1 + 4a))`; the registration day for users who signed up
//!   inside the window and never logged in.
//!
//! # Tags ([`tags`], [`Generator::tag_members`])
//! [`TAG_COUNT`] flag tags in 16 families (`interest`, `purchase`, `device`, `lifecycle`, `risk`,
//! `demographic`, `consumption`, `marketing`, `content`, `geo`, `finance`, `social`,
//! `membership`, `model`, `experiment`, `app`), with densities between [`MIN_DENSITY`] (0.01 %)
//! and [`MAX_DENSITY`] (60 %), roughly log-uniform. Each tag follows a [`TagRule`]:
//! - nested (`parent` set): a subset of the parent's members, e.g.
//!   `interest/sports/fitness/gym_member ⊂ interest/sports/fitness ⊂ interest/sports`;
//! - overlapping siblings: 50–90 % of the members also hold the sibling
//!   (`marketing/sms_opt_in` vs `marketing/push_opt_in`);
//! - demographic: membership probability scaled by gender, age-group and city-tier multipliers
//!   (`interest/beauty` leans female, `demographic/student` young, `demographic/high_income`
//!   tier 1), calibrated so the overall density is the spec's;
//! - otherwise independent Bernoulli per user.
//!
//! # Events ([`Generator::event_members`], [`Generator::event_day`])
//! Ten [`Event`] types on each of the 30 days ending at [`REFERENCE_DAY`]. A user registered by
//! the day logs in with probability `a * (0.55 + 0.9 exp(-account_age_days / 120))` (≈19 % daily
//! active); other events are drawn from the same day's members of their parent event
//! (`login → view → add_cart → purchase → pay`, `login → search/message`,
//! `view → like/comment/share`) with a fixed conversion scaled by `0.6 + 0.8 a`, so funnels
//! narrow at each step (≈19 % login, 15 % view, 3 % add to cart, 1.2 % purchase, 1.1 % pay on a
//! day). A member's count on the day is `1 + Geometric` with an event-specific mean scaled by
//! `0.5 + a` (≈10 views and 2.3 logins per active user-day).
//!
//! # Cost
//! Demographic tags, events and attributes use a per-user latent cache (2 bytes per user),
//! built on first use or by [`Generator::warm_up`]. Sparse draws jump over non-members with
//! geometric gaps, dense ones flip one 32-bit coin per user, branch-free. A nested tag or a
//! child event regenerates its ancestors; to load everything, [`Generator::for_each_tag`] and
//! [`Generator::for_each_event_day`] generate each piece once. `examples/gen_stats.rs` prints
//! the timings.

mod attributes;
mod detmath;
mod dims;
mod events;
mod rng;
mod tags;

#[cfg(feature = "engine")]
pub mod load;
pub mod mapping;
#[cfg(feature = "parquet")]
pub mod parquet_files;

use std::fmt;
use std::sync::OnceLock;

pub use attributes::{Attributes, FIRST_REGISTRATION_DAY, REFERENCE_DAY, REGISTRATION_DAYS};
pub use dims::{
    AGE_GROUP_BOUNDS, AGE_GROUPS, AGE_MAX, AGE_MIN, CHANNELS, CITY_COUNT, CITY_TIERS, GENDERS,
    PROVINCES, VIP_MAX, age_group, city_name, city_names, city_province, city_tier,
};
pub use events::{EVENT_DAY_COUNT, EVENTS, Event, FIRST_EVENT_DAY};
pub use tags::{MAX_DENSITY, MIN_DENSITY, Skew, TAG_COUNT, TagRule, TagSpec, tag_index, tags};

use attributes::Profile;

/// Default number of users for benchmarks; the full run uses 10 000 000.
pub const DEFAULT_USERS: u32 = 1_000_000;

/// External key of user `id`: `u` and the id in ten zero-padded digits.
pub fn key(id: u32) -> String {
    format!("u{id:010}")
}

/// Generates the data set of `users` users from `seed`. Every method is deterministic and
/// independent of the others and of the call order.
pub struct Generator {
    seed: u64,
    users: u32,
    profile: OnceLock<Profile>,
}

impl Generator {
    pub fn new(seed: u64, users: u32) -> Self {
        Self {
            seed,
            users,
            profile: OnceLock::new(),
        }
    }

    pub fn seed(&self) -> u64 {
        self.seed
    }

    pub fn users(&self) -> u32 {
        self.users
    }

    /// Builds the per-user latent cache now rather than inside the first call that needs it
    /// (useful to keep it out of a measurement).
    pub fn warm_up(&self) {
        self.profile();
    }

    fn profile(&self) -> &Profile {
        self.profile
            .get_or_init(|| Profile::build(self.seed, self.users))
    }
}

impl fmt::Debug for Generator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Generator")
            .field("seed", &self.seed)
            .field("users", &self.users)
            .field("warm", &self.profile.get().is_some())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// FNV-1a over everything a small data set contains.
    fn fingerprint(g: &Generator) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let mut eat = |x: u64| {
            for b in x.to_le_bytes() {
                h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
            }
        };
        let a = g.attributes();
        for u in 0..a.len() {
            eat(u64::from(a.gender[u]));
            eat(u64::from(a.age[u]));
            eat(u64::from(a.city[u]));
            eat(u64::from(a.channel[u]));
            eat(a.registered_day[u] as u64);
            eat(u64::from(a.vip[u]));
            eat(a.spend_cents[u] as u64);
            eat(a.last_active_day[u] as u64);
        }
        for tag in [0, 1, 2, 500, 999] {
            g.tag_members(tag)
                .into_iter()
                .for_each(|u| eat(u64::from(u)));
        }
        for (u, c) in g.event_day(Event::Pay, REFERENCE_DAY) {
            eat(u64::from(u));
            eat(u64::from(c));
        }
        h
    }

    #[test]
    fn same_seed_same_data_other_seed_other_data() {
        let a = fingerprint(&Generator::new(1, 5_000));
        assert_eq!(a, fingerprint(&Generator::new(1, 5_000)));
        assert_ne!(a, fingerprint(&Generator::new(2, 5_000)));
        assert_ne!(a, fingerprint(&Generator::new(1, 5_001)));
    }

    /// Pins the output: a change here changes every benchmark's data set, which must be a
    /// deliberate decision (update the constant and say so in the commit).
    #[test]
    fn output_is_pinned() {
        assert_eq!(
            fingerprint(&Generator::new(42, 2_000)),
            12_111_302_036_625_793_565
        );
    }

    #[test]
    fn call_order_does_not_matter() {
        let warm = Generator::new(3, 4_000);
        let events_first = warm.event_members(Event::View, REFERENCE_DAY);
        let tag_first = warm.tag_members(7);
        let cold = Generator::new(3, 4_000);
        assert_eq!(cold.tag_members(7), tag_first);
        assert_eq!(cold.event_members(Event::View, REFERENCE_DAY), events_first);
    }

    #[test]
    fn keys() {
        assert_eq!(key(0), "u0000000000");
        assert_eq!(key(7), "u0000000007");
        assert_eq!(key(u32::MAX), "u4294967295");
        assert_eq!(key(9_999_999).len(), 11);
    }

    #[test]
    fn empty_generator() {
        let g = Generator::new(1, 0);
        assert!(g.attributes().is_empty());
        assert!(g.tag_members(0).is_empty());
        assert!(g.event_members(Event::Pay, REFERENCE_DAY).is_empty());
        assert_eq!(
            format!("{g:?}"),
            "Generator { seed: 1, users: 0, warm: true }"
        );
    }
}
