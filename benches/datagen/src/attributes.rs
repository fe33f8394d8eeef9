//! Attribute columns and the cached per-user latent columns they share with tags and events.

use rand::RngCore;

use crate::detmath;
use crate::dims::{self, AGE_MIN, VIP_MAX};
use crate::rng::{self, Kind, Rng, stream};
use crate::{Generator, events};

/// 2026-11-25 as days since 1970-01-01: the last day of registrations and of events.
pub const REFERENCE_DAY: i32 = 20_782;
/// Registrations span this many days, ending at [`REFERENCE_DAY`] (three years).
pub const REGISTRATION_DAYS: i32 = 1_096;
/// First possible `registered_day` (2023-11-26).
pub const FIRST_REGISTRATION_DAY: i32 = REFERENCE_DAY - REGISTRATION_DAYS + 1;

/// Spend thresholds, in cents, of VIP levels 1..=5 (500, 2 000, 8 000, 30 000, 100 000 yuan).
const VIP_THRESHOLDS_CENTS: [i64; VIP_MAX as usize] =
    [50_000, 200_000, 800_000, 3_000_000, 10_000_000];
/// `ln` of the median spend of a paying user of average propensity (12 000 cents).
const SPEND_LOG_MEDIAN: f64 = 9.392_661_928_770_137;
const SPEND_LOG_SIGMA: f64 = 1.6;

/// All attributes, one entry per user id (column `x[id]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attributes {
    /// Index into [`crate::GENDERS`].
    pub gender: Vec<u8>,
    /// Years, `AGE_MIN..=AGE_MAX`.
    pub age: Vec<u8>,
    /// Index into [`crate::city_names`].
    pub city: Vec<u16>,
    /// Index into [`crate::PROVINCES`]; always `city_province(city)`.
    pub province: Vec<u8>,
    /// Index into [`crate::CHANNELS`].
    pub channel: Vec<u8>,
    /// Days since 1970-01-01, non-decreasing in the id.
    pub registered_day: Vec<i32>,
    /// `0..=VIP_MAX`.
    pub vip: Vec<u8>,
    /// Total spend in cents (a decimal with 2 fraction digits); 0 for non-payers.
    pub spend_cents: Vec<i64>,
    /// Days since 1970-01-01, in `registered_day..=REFERENCE_DAY`.
    pub last_active_day: Vec<i32>,
}

impl Attributes {
    /// Number of users.
    pub fn len(&self) -> usize {
        self.gender.len()
    }

    /// True for a generator of zero users.
    pub fn is_empty(&self) -> bool {
        self.gender.is_empty()
    }
}

/// Registration day of `id` among `users`: ids are assigned in sign-up order, and the sign-up
/// rate grows linearly to twice its initial value over the three years.
pub(crate) fn registered_day(id: u32, users: u32) -> i32 {
    let x = (f64::from(id) + 0.5) / f64::from(users);
    // Inverse CDF of the density (1 + t) / 1.5 on t in [0, 1].
    let t = (1.0 + 3.0 * x).sqrt() - 1.0;
    let offset = ((t * f64::from(REGISTRATION_DAYS)) as i32).min(REGISTRATION_DAYS - 1);
    FIRST_REGISTRATION_DAY + offset
}

/// Latent per-user columns needed by demographic tags, events and several attributes; built
/// once per generator (2 bytes per user).
#[derive(Debug)]
pub(crate) struct Profile {
    /// Engagement propensity, quantised: see [`propensity`].
    pub activity: Vec<u8>,
    /// [`dims::segment`] of the user's gender, age and city.
    pub segment: Vec<u8>,
    /// `reg_starts[k]` is the first id registered on or after `FIRST_REGISTRATION_DAY + k`;
    /// `REGISTRATION_DAYS + 1` entries, the last one being the number of users.
    pub reg_starts: Vec<u32>,
}

/// Engagement propensity in (0, 1) of a quantised activity level: `a = U^2.5`, mean 0.29.
pub(crate) fn propensity(level: u8) -> f64 {
    (f64::from(level) + 0.5) * (1.0 / 256.0)
}

impl Profile {
    pub(crate) fn build(seed: u64, users: u32) -> Self {
        let gender = gender_column(seed, users);
        let age = age_column(seed, users);
        let city = city_column(seed, users);
        let segment = (0..users as usize)
            .map(|i| dims::segment(gender[i], age[i], city[i]))
            .collect();
        let mut rng = stream(seed, Kind::Activity, 0, 0);
        let activity = (0..users)
            .map(|_| {
                let u = rng::unit(&mut rng);
                ((u * u * u.sqrt()) * 256.0) as u8
            })
            .collect();
        let reg_starts = (0..=REGISTRATION_DAYS)
            .map(|k| first_id_registered_from(FIRST_REGISTRATION_DAY + k, users))
            .collect();
        Self {
            activity,
            segment,
            reg_starts,
        }
    }

    /// Ids `0..n` are the users registered on or before `day`.
    pub(crate) fn registered_by(&self, day: i32) -> u32 {
        let k = (day - FIRST_REGISTRATION_DAY + 1).clamp(0, REGISTRATION_DAYS) as usize;
        self.reg_starts[k]
    }
}

/// Smallest id whose registration day is `>= day` (or `users`).
fn first_id_registered_from(day: i32, users: u32) -> u32 {
    let (mut lo, mut hi) = (0u32, users);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if registered_day(mid, users) < day {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo
}

fn column<T>(seed: u64, kind: Kind, users: u32, mut f: impl FnMut(u64) -> T) -> Vec<T> {
    let mut rng = stream(seed, kind, 0, 0);
    (0..users).map(|_| f(rng.next_u64())).collect()
}

fn gender_column(seed: u64, users: u32) -> Vec<u8> {
    let t = dims::tables();
    column(seed, Kind::Gender, users, |r| t.gender.sample(r) as u8)
}

fn age_column(seed: u64, users: u32) -> Vec<u8> {
    let t = dims::tables();
    column(seed, Kind::Age, users, |r| AGE_MIN + t.age.sample(r) as u8)
}

fn city_column(seed: u64, users: u32) -> Vec<u16> {
    let t = dims::tables();
    column(seed, Kind::City, users, |r| t.city.sample(r) as u16)
}

/// Spend in cents and VIP level of one user of propensity `a`.
fn spend_and_vip(rng: &mut Rng, a: f64) -> (i64, u8) {
    let payer_probability = (0.15 + 0.9 * a).min(1.0);
    if rng::unit(rng) >= payer_probability {
        return (0, 0);
    }
    let log_cents = SPEND_LOG_MEDIAN + 0.8 * (a - 0.29) + SPEND_LOG_SIGMA * rng::normal(rng);
    let cents = (detmath::exp(log_cents.min(25.0)).round() as i64).max(1);
    let mut vip = VIP_THRESHOLDS_CENTS.iter().filter(|&&t| cents >= t).count() as u8;
    // A quarter of qualifying users have let their membership lapse by one level.
    if vip > 0 && rng::unit(rng) < 0.25 {
        vip -= 1;
    }
    (cents, vip)
}

impl Generator {
    /// Every attribute column of every user.
    ///
    /// Costs about one pass per column plus the 30 daily `login` draws (for
    /// `last_active_day`); see the crate docs for the distributions.
    pub fn attributes(&self) -> Attributes {
        let users = self.users;
        let seed = self.seed;
        let profile = self.profile();
        let tables = dims::tables();

        let gender = gender_column(seed, users);
        let age = age_column(seed, users);
        let city = city_column(seed, users);
        let province = city.iter().map(|&c| dims::city_province(c)).collect();
        let channel = column(seed, Kind::Channel, users, |r| {
            tables.channel.sample(r) as u8
        });

        let mut registered = Vec::with_capacity(users as usize);
        for (k, run) in profile.reg_starts.windows(2).enumerate() {
            let day = FIRST_REGISTRATION_DAY + k as i32;
            registered.extend(std::iter::repeat_n(day, (run[1] - run[0]) as usize));
        }

        let mut rng = stream(seed, Kind::Spend, 0, 0);
        let (spend_cents, vip) = profile
            .activity
            .iter()
            .map(|&level| spend_and_vip(&mut rng, propensity(level)))
            .unzip();

        let last_active_day = self.last_active_column(profile, &registered);

        Attributes {
            gender,
            age,
            city,
            province,
            channel,
            registered_day: registered,
            vip,
            spend_cents,
            last_active_day,
        }
    }

    /// The last `login` day in the event window if there is one; otherwise a day between
    /// registration and the window, closer to the window for more engaged users (the
    /// registration day itself for users who registered inside the window and never logged in).
    fn last_active_column(&self, profile: &Profile, registered: &[i32]) -> Vec<i32> {
        const NONE: i32 = i32::MIN;
        let mut last = vec![NONE; self.users as usize];
        for day in events::FIRST_EVENT_DAY..=REFERENCE_DAY {
            for u in self.event_members(crate::Event::Login, day) {
                last[u as usize] = day;
            }
        }
        let mut rng = stream(self.seed, Kind::LastActive, 0, 0);
        for (u, slot) in last.iter_mut().enumerate() {
            if *slot != NONE {
                continue;
            }
            let reg = registered[u];
            *slot = if reg >= events::FIRST_EVENT_DAY {
                reg
            } else {
                let span = f64::from(events::FIRST_EVENT_DAY - reg);
                let a = propensity(profile.activity[u]);
                let shape = detmath::powf(rng::unit_open(&mut rng), 1.0 + 4.0 * a);
                let gap = ((span * shape) as i32).min(events::FIRST_EVENT_DAY - reg - 1);
                events::FIRST_EVENT_DAY - 1 - gap
            };
        }
        last
    }

    /// Registration day of user `id` (days since 1970-01-01). Ids are in sign-up order, so this
    /// is non-decreasing in `id`.
    ///
    /// # Panics
    /// If `id >= users`.
    pub fn registered_day(&self, id: u32) -> i32 {
        assert!(id < self.users, "user {id} out of range 0..{}", self.users);
        registered_day(id, self.users)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CITY_COUNT, Event, PROVINCES};

    fn attrs(seed: u64, users: u32) -> Attributes {
        Generator::new(seed, users).attributes()
    }

    #[test]
    fn spend_median_constant() {
        assert!((SPEND_LOG_MEDIAN - detmath::ln(12_000.0)).abs() < 1e-15);
    }

    #[test]
    fn reference_day_is_2026_11_25() {
        // 2026-11-25 is 56 years after 1970-01-01 (14 of them leap years) plus 328 days.
        assert_eq!(REFERENCE_DAY, 56 * 365 + 14 + 328);
        assert_eq!(FIRST_REGISTRATION_DAY, 19_687);
    }

    #[test]
    fn columns_have_one_value_per_user_and_are_in_range() {
        let a = attrs(7, 20_000);
        assert_eq!(a.len(), 20_000);
        for col in [
            a.age.len(),
            a.city.len(),
            a.province.len(),
            a.channel.len(),
            a.registered_day.len(),
            a.vip.len(),
            a.spend_cents.len(),
            a.last_active_day.len(),
        ] {
            assert_eq!(col, 20_000);
        }
        assert!(a.gender.iter().all(|&g| g < 3));
        assert!(
            a.age
                .iter()
                .all(|&x| (dims::AGE_MIN..=dims::AGE_MAX).contains(&x))
        );
        assert!(a.city.iter().all(|&c| (c as usize) < CITY_COUNT));
        assert!(
            a.channel
                .iter()
                .all(|&c| (c as usize) < crate::CHANNELS.len())
        );
        assert!(a.vip.iter().all(|&v| v <= VIP_MAX));
        assert!(a.spend_cents.iter().all(|&s| s >= 0));
    }

    #[test]
    fn province_follows_city() {
        let a = attrs(8, 20_000);
        for (c, p) in a.city.iter().zip(&a.province) {
            assert_eq!(*p, dims::city_province(*c));
            assert!((*p as usize) < PROVINCES.len());
        }
    }

    #[test]
    fn ages_skew_young_across_the_whole_range() {
        let a = attrs(9, 100_000);
        let mut ages = a.age.clone();
        ages.sort_unstable();
        let median = ages[ages.len() / 2];
        assert!((22..=32).contains(&median), "median age {median}");
        assert!(ages.contains(&dims::AGE_MIN));
        assert!(*ages.last().unwrap() >= 70);
        let over_60 = ages.iter().filter(|&&x| x >= 60).count();
        assert!(over_60 > 0 && over_60 < 5_000, "{over_60} users 60+");
    }

    #[test]
    fn gender_city_and_channel_marginals() {
        let n = 100_000;
        let a = attrs(10, n);
        let share = |g: u8| a.gender.iter().filter(|&&x| x == g).count() as f64 / f64::from(n);
        assert!((share(0) - 0.49).abs() < 0.01);
        assert!((share(1) - 0.48).abs() < 0.01);
        assert!((share(2) - 0.03).abs() < 0.004);
        let mut city_counts = vec![0u32; CITY_COUNT];
        a.city.iter().for_each(|&c| city_counts[c as usize] += 1);
        // Zipf with s = 1: city 0 has about twice the users of city 1, 100 times city 99.
        let ratio = f64::from(city_counts[0]) / f64::from(city_counts[1]);
        assert!((1.8..2.2).contains(&ratio), "city 0/1 ratio {ratio}");
        assert!(city_counts[0] > 50 * city_counts[99]);
        let mut channel_counts = [0u32; 20];
        a.channel
            .iter()
            .for_each(|&c| channel_counts[c as usize] += 1);
        assert!(channel_counts.windows(2).take(5).all(|w| w[0] > w[1]));
        assert!(channel_counts[19] > 0);
    }

    #[test]
    fn registration_is_ordered_and_spans_three_years() {
        let g = Generator::new(1, 50_000);
        let a = g.attributes();
        assert!(a.registered_day.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(a.registered_day[0], FIRST_REGISTRATION_DAY);
        assert_eq!(*a.registered_day.last().unwrap(), REFERENCE_DAY);
        assert_eq!(a.registered_day[12_345], g.registered_day(12_345));
        // Growing sign-ups: the last year has more users than the first.
        let first_year = a
            .registered_day
            .iter()
            .filter(|&&d| d < FIRST_REGISTRATION_DAY + 365)
            .count();
        let last_year = a
            .registered_day
            .iter()
            .filter(|&&d| d > REFERENCE_DAY - 365)
            .count();
        assert!(last_year as f64 > 1.3 * first_year as f64);
        assert!(first_year > 10_000);
    }

    #[test]
    fn spend_and_vip() {
        let n = 100_000;
        let a = attrs(11, n);
        let non_payers = a.spend_cents.iter().filter(|&&s| s == 0).count() as f64 / f64::from(n);
        assert!(
            (0.56..0.64).contains(&non_payers),
            "non-payers {non_payers}"
        );
        let vip0 = a.vip.iter().filter(|&&v| v == 0).count() as f64 / f64::from(n);
        assert!(vip0 > 0.85, "vip 0 share {vip0}");
        assert!(a.vip.iter().any(|&v| v >= 3));
        for (v, s) in a.vip.iter().zip(&a.spend_cents) {
            if *v > 0 {
                assert!(*s >= VIP_THRESHOLDS_CENTS[*v as usize - 1]);
            }
        }
        let mut paid: Vec<i64> = a.spend_cents.iter().copied().filter(|&s| s > 0).collect();
        paid.sort_unstable();
        let median = paid[paid.len() / 2];
        assert!((8_000..20_000).contains(&median), "median spend {median}");
    }

    #[test]
    fn last_active_is_consistent_with_registration_and_logins() {
        let g = Generator::new(12, 30_000);
        let a = g.attributes();
        for u in 0..a.len() {
            assert!(a.last_active_day[u] >= a.registered_day[u], "user {u}");
            assert!(a.last_active_day[u] <= REFERENCE_DAY);
        }
        let day = REFERENCE_DAY - 3;
        let logins = g.event_members(Event::Login, day);
        assert!(!logins.is_empty());
        for u in &logins {
            assert!(a.last_active_day[*u as usize] >= day);
        }
        for u in g.event_members(Event::Login, REFERENCE_DAY) {
            assert_eq!(a.last_active_day[u as usize], REFERENCE_DAY);
        }
        // Some users were last seen before the event window.
        assert!(
            a.last_active_day
                .iter()
                .any(|&d| d < events::FIRST_EVENT_DAY)
        );
    }
}
