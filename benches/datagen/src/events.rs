//! Behaviour events: who did what on which day, and how often.

use crate::Generator;
use crate::attributes::{FIRST_REGISTRATION_DAY, REFERENCE_DAY, propensity};
use crate::detmath;
use crate::rng::{self, Kind, stream};

/// Number of days with events, ending at [`REFERENCE_DAY`].
pub const EVENT_DAY_COUNT: i32 = 30;
/// First day with events (2026-10-27).
pub const FIRST_EVENT_DAY: i32 = REFERENCE_DAY - EVENT_DAY_COUNT + 1;

/// Event type names, indexed by `Event as usize`.
pub const EVENTS: [&str; 10] = [
    "login", "view", "search", "add_cart", "purchase", "share", "comment", "like", "message", "pay",
];

/// An event type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Event {
    Login,
    View,
    Search,
    AddCart,
    Purchase,
    Share,
    Comment,
    Like,
    Message,
    Pay,
}

impl Event {
    /// Every event type, in [`EVENTS`] order.
    pub const ALL: [Event; 10] = [
        Event::Login,
        Event::View,
        Event::Search,
        Event::AddCart,
        Event::Purchase,
        Event::Share,
        Event::Comment,
        Event::Like,
        Event::Message,
        Event::Pay,
    ];

    pub fn name(self) -> &'static str {
        EVENTS[self as usize]
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.name() == name)
    }

    /// The event whose same-day members this event's members are drawn from (`None` for
    /// `login`, which is drawn from all registered users).
    pub fn parent(self) -> Option<Event> {
        match self {
            Event::Login => None,
            Event::View | Event::Search | Event::Message => Some(Event::Login),
            Event::AddCart | Event::Share | Event::Comment | Event::Like => Some(Event::View),
            Event::Purchase => Some(Event::AddCart),
            Event::Pay => Some(Event::Purchase),
        }
    }

    /// Probability that an average member of the parent event on a day also does this event;
    /// scaled per user by `0.6 + 0.8 a` (engaged users convert better).
    fn conversion(self) -> f64 {
        match self {
            Event::Login => 1.0,
            Event::View => 0.75,
            Event::Search => 0.35,
            Event::Message => 0.12,
            Event::AddCart => 0.18,
            Event::Share => 0.05,
            Event::Comment => 0.08,
            Event::Like => 0.30,
            Event::Purchase => 0.35,
            Event::Pay => 0.85,
        }
    }

    /// Mean count per active user-day for a user of average propensity.
    fn mean_count(self) -> f64 {
        match self {
            Event::Login => 2.2,
            Event::View => 9.0,
            Event::Search => 3.0,
            Event::AddCart => 1.6,
            Event::Purchase => 1.3,
            Event::Share => 1.4,
            Event::Comment => 1.8,
            Event::Like => 5.0,
            Event::Message => 4.0,
            Event::Pay => 1.1,
        }
    }
}

/// Login-rate multiplier of an account `age` days old: new accounts are the most active, and
/// activity decays to 0.55 of the propensity with a 120-day time constant.
fn account_age_factor(age: i32) -> f64 {
    0.55 + 0.9 * detmath::exp(-f64::from(age) / 120.0)
}

fn check_day(day: i32) {
    assert!(
        (FIRST_EVENT_DAY..=REFERENCE_DAY).contains(&day),
        "day {day} is outside the event window {FIRST_EVENT_DAY}..={REFERENCE_DAY}"
    );
}

impl Generator {
    /// Users who did `event` on `day` (days since 1970-01-01), ascending.
    ///
    /// Every member registered on or before `day`. Members of a child event (see
    /// [`Event::parent`]) are a subset of the parent's members on the same day.
    ///
    /// # Panics
    /// If `day` is outside `FIRST_EVENT_DAY..=REFERENCE_DAY`.
    pub fn event_members(&self, event: Event, day: i32) -> Vec<u32> {
        check_day(day);
        match event.parent() {
            None => self.event_within(event, day, &[]),
            Some(parent) => self.event_within(event, day, &self.event_members(parent, day)),
        }
    }

    /// Users who did `event` on `day` with their count that day (`>= 1`), ascending by user.
    /// The users are exactly [`Generator::event_members`]`(event, day)`.
    ///
    /// # Panics
    /// If `day` is outside `FIRST_EVENT_DAY..=REFERENCE_DAY`.
    pub fn event_day(&self, event: Event, day: i32) -> Vec<(u32, u16)> {
        self.with_counts(event, day, self.event_members(event, day))
    }

    /// Calls `visit(event, day, members_with_counts)` for every event type on every day of
    /// the window, days ascending and events in [`Event::ALL`] order, generating each
    /// (event, day) once: the cheap way to load all events. Same data as
    /// [`Generator::event_day`].
    pub fn for_each_event_day(&self, mut visit: impl FnMut(Event, i32, Vec<(u32, u16)>)) {
        for day in FIRST_EVENT_DAY..=REFERENCE_DAY {
            let mut members: Vec<Vec<u32>> = Vec::with_capacity(Event::ALL.len());
            for event in Event::ALL {
                let parent = event.parent().map_or(&[][..], |p| &members[p as usize]);
                let m = self.event_within(event, day, parent);
                members.push(m);
            }
            for (event, m) in Event::ALL.into_iter().zip(members) {
                visit(event, day, self.with_counts(event, day, m));
            }
        }
    }

    /// Members of `event` on `day` given the members of its parent event that day (ignored
    /// for `login`).
    fn event_within(&self, event: Event, day: i32, parent_members: &[u32]) -> Vec<u32> {
        let profile = self.profile();
        let mut rng = stream(self.seed, Kind::Event, event as u64, day as u64);
        if event.parent().is_none() {
            return self.logins(&mut rng, day);
        }
        let rate = event.conversion();
        let thresholds: Vec<u64> = (0..=255u8)
            .map(|level| rng::threshold(rate * (0.6 + 0.8 * propensity(level))))
            .collect();
        let mut out = Vec::with_capacity(parent_members.len() / 2);
        rng::keep_into(&mut rng, &mut out, parent_members.iter().copied(), |u| {
            thresholds[profile.activity[u as usize] as usize]
        });
        out
    }

    /// Attaches each member's count of `event` on `day`.
    fn with_counts(&self, event: Event, day: i32, members: Vec<u32>) -> Vec<(u32, u16)> {
        let activity = &self.profile().activity;
        // count = 1 + K, K ~ Geometric with mean mu = (mean - 1)(0.5 + a):
        // P(K >= k) = rho^k, rho = mu / (1 + mu), sampled as floor(ln U / ln rho).
        let inv_ln_rho: Vec<f64> = (0..=255u8)
            .map(|level| {
                let mu = (event.mean_count() - 1.0) * (0.5 + propensity(level));
                1.0 / detmath::ln(mu / (1.0 + mu))
            })
            .collect();
        let mut rng = stream(self.seed, Kind::EventCount, event as u64, day as u64);
        members
            .into_iter()
            .map(|u| {
                let k = detmath::ln(rng::unit_open(&mut rng))
                    * inv_ln_rho[activity[u as usize] as usize];
                (u, 1 + k.min(f64::from(u16::MAX - 1)) as u16)
            })
            .collect()
    }

    /// Each user registered by `day` logs in with probability `a * f(day - registered)`.
    fn logins(&self, rng: &mut rng::Rng, day: i32) -> Vec<u32> {
        let profile = self.profile();
        let mut out = Vec::with_capacity(profile.registered_by(day) as usize / 4);
        let mut thresholds = [0u64; 256];
        for (k, run) in profile.reg_starts.windows(2).enumerate() {
            let registered = FIRST_REGISTRATION_DAY + k as i32;
            if registered > day {
                break;
            }
            let factor = account_age_factor(day - registered);
            for (level, t) in thresholds.iter_mut().enumerate() {
                *t = rng::threshold(propensity(level as u8) * factor);
            }
            rng::keep_into(rng, &mut out, run[0]..run[1], |u| {
                thresholds[profile.activity[u as usize] as usize]
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const USERS: u32 = 50_000;

    fn days() -> impl Iterator<Item = i32> {
        FIRST_EVENT_DAY..=REFERENCE_DAY
    }

    #[test]
    fn names_round_trip() {
        for e in Event::ALL {
            assert_eq!(Event::from_name(e.name()), Some(e));
            assert_eq!(EVENTS[e as usize], e.name());
        }
        assert_eq!(Event::from_name("nope"), None);
        assert_eq!(FIRST_EVENT_DAY, REFERENCE_DAY - 29);
    }

    #[test]
    fn members_sorted_in_range_and_registered() {
        let g = Generator::new(3, USERS);
        for e in Event::ALL {
            for day in [FIRST_EVENT_DAY, FIRST_EVENT_DAY + 11, REFERENCE_DAY] {
                let m = g.event_members(e, day);
                assert!(m.windows(2).all(|w| w[0] < w[1]), "{e:?} {day} not sorted");
                assert!(m.iter().all(|&u| u < USERS));
                assert!(m.iter().all(|&u| g.registered_day(u) <= day), "{e:?} {day}");
            }
        }
        // The window includes sign-ups, and some of them are active right away.
        let newest = g.event_members(Event::Login, FIRST_EVENT_DAY);
        let later_signups = g.event_members(Event::Login, REFERENCE_DAY);
        assert!(later_signups.last() > newest.last());
    }

    #[test]
    fn child_events_are_subsets_of_their_parent() {
        let g = Generator::new(4, USERS);
        let day = REFERENCE_DAY - 5;
        for e in Event::ALL {
            let Some(parent) = e.parent() else { continue };
            let child = g.event_members(e, day);
            let parent = g.event_members(parent, day);
            assert!(
                child.iter().all(|u| parent.binary_search(u).is_ok()),
                "{e:?}"
            );
            assert!(child.len() < parent.len());
            assert!(!child.is_empty());
        }
    }

    #[test]
    fn daily_active_and_funnel() {
        let g = Generator::new(5, 100_000);
        let mut dau = Vec::new();
        for day in days().step_by(7) {
            dau.push(g.event_members(Event::Login, day).len() as f64 / 100_000.0);
        }
        assert!(
            dau.iter().all(|&d| (0.15..0.25).contains(&d)),
            "DAU {dau:?}"
        );
        let day = REFERENCE_DAY;
        let count = |e| g.event_members(e, day).len();
        let funnel = [
            Event::Login,
            Event::View,
            Event::AddCart,
            Event::Purchase,
            Event::Pay,
        ]
        .map(count);
        assert!(funnel.windows(2).all(|w| w[0] > w[1]), "funnel {funnel:?}");
        assert!(funnel[4] > 100, "funnel {funnel:?}");
    }

    #[test]
    fn activity_decays_with_account_age() {
        let g = Generator::new(6, 200_000);
        let day = REFERENCE_DAY;
        let logins = g.event_members(Event::Login, day);
        let n_old = g.profile().registered_by(FIRST_REGISTRATION_DAY + 365);
        let n_recent_start = g.profile().registered_by(REFERENCE_DAY - 60);
        let old = logins.iter().filter(|&&u| u < n_old).count() as f64 / f64::from(n_old);
        let recent = logins.iter().filter(|&&u| u >= n_recent_start).count() as f64
            / f64::from(200_000 - n_recent_start);
        assert!(recent > 1.5 * old, "recent {recent} vs old {old}");
    }

    #[test]
    fn event_days_are_independent_and_deterministic() {
        let g = Generator::new(7, USERS);
        let a = g.event_members(Event::View, REFERENCE_DAY - 1);
        assert_eq!(
            a,
            Generator::new(7, USERS).event_members(Event::View, REFERENCE_DAY - 1)
        );
        assert_ne!(a, g.event_members(Event::View, REFERENCE_DAY - 2));
        assert_ne!(
            a,
            Generator::new(8, USERS).event_members(Event::View, REFERENCE_DAY - 1)
        );
    }

    #[test]
    fn counts_match_members_and_are_positive() {
        let g = Generator::new(8, USERS);
        let day = REFERENCE_DAY - 2;
        for e in [Event::Login, Event::View, Event::Pay] {
            let with_counts = g.event_day(e, day);
            let ids: Vec<u32> = with_counts.iter().map(|(u, _)| *u).collect();
            assert_eq!(ids, g.event_members(e, day));
            assert!(with_counts.iter().all(|(_, c)| *c >= 1));
        }
        let views = g.event_day(Event::View, day);
        let mean = views.iter().map(|(_, c)| f64::from(*c)).sum::<f64>() / views.len() as f64;
        assert!((6.0..14.0).contains(&mean), "mean views {mean}");
        assert!(views.iter().any(|(_, c)| *c >= 30));
    }

    #[test]
    fn for_each_event_day_matches_event_day() {
        let g = Generator::new(9, 20_000);
        let mut seen = 0;
        g.for_each_event_day(|event, day, data| {
            assert_eq!(Event::ALL[seen % 10], event);
            assert_eq!(FIRST_EVENT_DAY + (seen / 10) as i32, day);
            if seen % 7 == 0 || day == REFERENCE_DAY {
                assert_eq!(data, g.event_day(event, day), "{event:?} {day}");
            }
            seen += 1;
        });
        assert_eq!(seen, 10 * EVENT_DAY_COUNT as usize);
    }

    #[test]
    #[should_panic(expected = "outside the event window")]
    fn day_outside_window_panics() {
        Generator::new(1, 10).event_members(Event::Login, FIRST_EVENT_DAY - 1);
    }
}
