//! Value tables of the enum attributes and the fixed distributions over them.

use std::sync::OnceLock;

use crate::detmath;
use crate::rng::Discrete;

/// Values of `gender`, indexed by the `u8` code.
pub const GENDERS: [&str; 3] = ["female", "male", "unknown"];
const GENDER_WEIGHTS: [f64; 3] = [0.49, 0.48, 0.03];

/// Youngest and oldest generated age.
pub const AGE_MIN: u8 = 14;
pub const AGE_MAX: u8 = 80;
/// Age groups used by demographic tags: `[start, end)` in years; names in [`AGE_GROUPS`].
pub const AGE_GROUP_BOUNDS: [u8; 7] = [14, 18, 25, 35, 45, 60, 81];
pub const AGE_GROUPS: [&str; 6] = ["14-17", "18-24", "25-34", "35-44", "45-59", "60+"];
/// Shifted log-normal: `age - 7.5 ~ LogNormal(ln 19, 0.55)`, discretised and truncated.
const AGE_SHIFT: f64 = 7.5;
const AGE_LOG_MEDIAN: f64 = 19.0;
const AGE_LOG_SIGMA: f64 = 0.55;

/// Number of cities (`city_000` .. `city_299`), ordered by popularity.
pub const CITY_COUNT: usize = 300;
const CITY_ZIPF_S: f64 = 1.0;
/// City tiers: the first city index of tiers 2, 3 and 4 (tier 1 starts at 0).
const TIER_STARTS: [u16; 3] = [4, 30, 100];
pub const CITY_TIERS: [&str; 4] = ["tier1", "tier2", "tier3", "tier4"];

/// Provinces (provincial-level divisions of China), indexed by the `u8` code.
pub const PROVINCES: [&str; 34] = [
    "beijing",
    "tianjin",
    "hebei",
    "shanxi",
    "inner_mongolia",
    "liaoning",
    "jilin",
    "heilongjiang",
    "shanghai",
    "jiangsu",
    "zhejiang",
    "anhui",
    "fujian",
    "jiangxi",
    "shandong",
    "henan",
    "hubei",
    "hunan",
    "guangdong",
    "guangxi",
    "hainan",
    "chongqing",
    "sichuan",
    "guizhou",
    "yunnan",
    "tibet",
    "shaanxi",
    "gansu",
    "qinghai",
    "ningxia",
    "xinjiang",
    "hong_kong",
    "macau",
    "taiwan",
];

/// Acquisition channels, indexed by the `u8` code, most frequent first.
pub const CHANNELS: [&str; 20] = [
    "organic",
    "app_store",
    "huawei_store",
    "xiaomi_store",
    "wechat_ad",
    "douyin_ad",
    "referral",
    "oppo_store",
    "vivo_store",
    "baidu_search",
    "kuaishou_ad",
    "google_play",
    "weibo_ad",
    "bilibili_ad",
    "qr_code_offline",
    "sms_campaign",
    "email_campaign",
    "partner_bank",
    "partner_telecom",
    "other",
];
const CHANNEL_ZIPF_S: f64 = 1.2;

/// VIP levels are `0..=VIP_MAX`.
pub const VIP_MAX: u8 = 5;

/// Name of city `city` (`city_000` ..).
pub fn city_name(city: u16) -> String {
    format!("city_{city:03}")
}

/// All city names, indexed by city code.
pub fn city_names() -> &'static [String] {
    static NAMES: OnceLock<Vec<String>> = OnceLock::new();
    NAMES.get_or_init(|| (0..CITY_COUNT as u16).map(city_name).collect())
}

/// The province of a city: a fixed map, the same for every seed. Consecutive cities land in
/// different provinces, so each province gets a mix of large and small cities.
pub fn city_province(city: u16) -> u8 {
    (city % PROVINCES.len() as u16) as u8
}

/// Tier of a city, `0` (tier 1, the 4 largest) to `3` (tier 4, cities 100..300).
pub fn city_tier(city: u16) -> u8 {
    TIER_STARTS.iter().filter(|&&start| city >= start).count() as u8
}

/// Index into [`AGE_GROUPS`] of an age in `AGE_MIN..=AGE_MAX`.
pub fn age_group(age: u8) -> u8 {
    (AGE_GROUP_BOUNDS[1..]
        .iter()
        .filter(|&&end| age >= end)
        .count() as u8)
        .min(5)
}

/// Demographic segment of a user: `gender * 24 + age_group * 4 + tier` (72 values).
pub(crate) const SEGMENTS: usize = 72;

pub(crate) fn segment(gender: u8, age: u8, city: u16) -> u8 {
    gender * 24 + age_group(age) * 4 + city_tier(city)
}

/// Distributions shared by the attribute columns and the demographic tag calibration.
#[derive(Debug)]
pub(crate) struct Tables {
    pub gender: Discrete,
    /// Over `age - AGE_MIN`.
    pub age: Discrete,
    pub city: Discrete,
    pub channel: Discrete,
    pub age_group_probs: [f64; 6],
    pub tier_probs: [f64; 4],
}

pub(crate) fn tables() -> &'static Tables {
    static TABLES: OnceLock<Tables> = OnceLock::new();
    TABLES.get_or_init(|| {
        let age_weights: Vec<f64> = (AGE_MIN..=AGE_MAX)
            .map(|age| {
                let x = f64::from(age) - AGE_SHIFT;
                let z = (detmath::ln(x) - detmath::ln(AGE_LOG_MEDIAN)) / AGE_LOG_SIGMA;
                detmath::exp(-0.5 * z * z) / x
            })
            .collect();
        let zipf = |n: usize, s: f64| -> Vec<f64> {
            (1..=n).map(|k| detmath::powf(k as f64, -s)).collect()
        };
        let age = Discrete::new(&age_weights);
        let city = Discrete::new(&zipf(CITY_COUNT, CITY_ZIPF_S));
        let mut age_group_probs = [0.0; 6];
        for (i, p) in age.probs().iter().enumerate() {
            age_group_probs[age_group(AGE_MIN + i as u8) as usize] += p;
        }
        let mut tier_probs = [0.0; 4];
        for (i, p) in city.probs().iter().enumerate() {
            tier_probs[city_tier(i as u16) as usize] += p;
        }
        Tables {
            gender: Discrete::new(&GENDER_WEIGHTS),
            age,
            city,
            channel: Discrete::new(&zipf(CHANNELS.len(), CHANNEL_ZIPF_S)),
            age_group_probs,
            tier_probs,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiers_and_groups() {
        assert_eq!(city_tier(0), 0);
        assert_eq!(city_tier(3), 0);
        assert_eq!(city_tier(4), 1);
        assert_eq!(city_tier(99), 2);
        assert_eq!(city_tier(299), 3);
        assert_eq!(age_group(14), 0);
        assert_eq!(age_group(17), 0);
        assert_eq!(age_group(18), 1);
        assert_eq!(age_group(59), 4);
        assert_eq!(age_group(80), 5);
        assert_eq!(segment(2, 80, 299), 71);
        assert_eq!(segment(0, 14, 0), 0);
    }

    #[test]
    fn every_province_has_cities() {
        let mut seen = [false; PROVINCES.len()];
        for c in 0..CITY_COUNT as u16 {
            seen[city_province(c) as usize] = true;
        }
        assert!(seen.iter().all(|s| *s));
        assert_eq!(city_names()[42], "city_042");
    }

    #[test]
    fn marginals_sum_to_one() {
        let t = tables();
        assert!((t.age_group_probs.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert!((t.tier_probs.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        // Young skew: most users under 35, few 60+.
        assert!(t.age_group_probs[..3].iter().sum::<f64>() > 0.6);
        assert!(t.age_group_probs[5] < 0.05);
    }
}
