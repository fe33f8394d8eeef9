//! The flag-tag catalog and tag membership.
//!
//! The catalog is fixed: names, densities and rules do not depend on the generator's seed, so a
//! benchmark can name `interest/sports/running` for every seed and size. Only membership does.

use std::sync::OnceLock;

use crate::Generator;
use crate::detmath;
use crate::dims::{self, SEGMENTS};
use crate::rng::{self, Kind, Rng, stream};

/// Number of tags in the catalog.
pub const TAG_COUNT: usize = 1_000;
/// Smallest and largest tag density.
pub const MIN_DENSITY: f64 = 1e-4;
pub const MAX_DENSITY: f64 = 0.6;

/// One flag tag of the catalog.
#[derive(Debug, Clone, PartialEq)]
pub struct TagSpec {
    /// Hierarchical path, e.g. `interest/sports/running`; its first segment is the family.
    pub path: String,
    /// Expected fraction of all users holding the tag.
    pub density: f64,
    /// Index of the tag this one is nested in: every member of this tag is a member of the
    /// parent, and `path` starts with the parent's path and `/`.
    pub parent: Option<usize>,
    /// How members are drawn from the parent's members (or from all users, without a parent).
    pub rule: TagRule,
}

impl TagSpec {
    /// First path segment: `interest`, `risk`, ...
    pub fn family(&self) -> &str {
        self.path.split('/').next().unwrap_or_default()
    }
}

/// How a tag's members are drawn from its universe (its parent's members, or all users).
#[derive(Debug, Clone, PartialEq)]
pub enum TagRule {
    /// Each user of the universe independently, with probability `density / parent density`.
    Bernoulli,
    /// Strongly overlapping sibling: the fraction `overlap` of this tag's members (in
    /// expectation) are members of `sibling`, which has the same parent; the rest are drawn from
    /// the universe outside `sibling`.
    Overlap { sibling: usize, overlap: f64 },
    /// Root tags only: user `u` is a member with probability `density * m(u) / E[m]`, where
    /// `m(u)` is the product of the user's gender, age-group and city-tier multipliers.
    Demographic(Skew),
}

/// Membership multipliers by demographic group, for [`TagRule::Demographic`].
#[derive(Debug, Clone, PartialEq)]
pub struct Skew {
    /// By gender code ([`crate::GENDERS`]).
    pub gender: [f64; 3],
    /// By age group ([`crate::AGE_GROUPS`]).
    pub age_group: [f64; 6],
    /// By city tier ([`crate::city_tier`]).
    pub tier: [f64; 4],
}

impl Skew {
    /// Multiplier of demographic segment `segment` (see `dims::segment`).
    fn multiplier(&self, segment: usize) -> f64 {
        self.gender[segment / 24] * self.age_group[segment / 4 % 6] * self.tier[segment % 4]
    }

    /// Expected multiplier over all users (gender, age and city are independent).
    pub fn mean(&self) -> f64 {
        let t = dims::tables();
        let dot = |w: &[f64], p: &[f64]| w.iter().zip(p).map(|(a, b)| a * b).sum::<f64>();
        dot(&self.gender, t.gender.probs())
            * dot(&self.age_group, &t.age_group_probs)
            * dot(&self.tier, &t.tier_probs)
    }

    fn max(&self) -> f64 {
        let max = |w: &[f64]| w.iter().copied().fold(0.0, f64::max);
        max(&self.gender) * max(&self.age_group) * max(&self.tier)
    }

    /// Membership probability of each demographic segment for a tag of `density`.
    fn probabilities(&self, density: f64) -> [f64; SEGMENTS] {
        let base = density / self.mean();
        std::array::from_fn(|s| (base * self.multiplier(s)).min(1.0))
    }
}

const FLAT_G: [f64; 3] = [1.0; 3];
const FEMALE: [f64; 3] = [1.8, 0.3, 1.0];
const MALE: [f64; 3] = [0.35, 1.7, 1.0];
const FLAT_A: [f64; 6] = [1.0; 6];
const TEEN: [f64; 6] = [4.0, 1.5, 0.4, 0.2, 0.1, 0.05];
const YOUNG: [f64; 6] = [1.5, 2.0, 1.2, 0.6, 0.3, 0.15];
const MID: [f64; 6] = [0.1, 0.6, 1.5, 1.6, 1.0, 0.5];
const SENIOR: [f64; 6] = [0.1, 0.2, 0.5, 1.0, 2.0, 3.0];
const PARENT: [f64; 6] = [0.02, 0.3, 1.8, 1.6, 0.5, 0.2];
const FLAT_T: [f64; 4] = [1.0; 4];
const TIER1: [f64; 4] = [2.0, 1.0, 0.6, 0.35];
const LOWER_TIER: [f64; 4] = [0.4, 0.8, 1.3, 1.8];

/// A demographic preset: `None` for a flat one.
type Preset = Option<([f64; 3], [f64; 6], [f64; 4])>;

const fn skew(g: [f64; 3], a: [f64; 6], t: [f64; 4]) -> Preset {
    Some((g, a, t))
}

/// The catalog: [`TAG_COUNT`] tags, parents before their children.
pub fn tags() -> &'static [TagSpec] {
    static TAGS: OnceLock<Vec<TagSpec>> = OnceLock::new();
    TAGS.get_or_init(build_catalog)
}

/// Index of the tag with this path.
pub fn tag_index(path: &str) -> Option<usize> {
    tags().iter().position(|t| t.path == path)
}

struct Catalog {
    specs: Vec<TagSpec>,
    rng: Rng,
}

/// The catalog's stream has a fixed seed: names and densities are the same for every data seed.
const CATALOG_SEED: u64 = 0x504f_5254_5241_4954; // "PORTRAIT"

impl Catalog {
    fn log_uniform(&mut self, lo: f64, hi: f64) -> f64 {
        let (l, h) = (detmath::ln(lo), detmath::ln(hi));
        detmath::exp(l + rng::unit(&mut self.rng) * (h - l))
    }

    fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + rng::unit(&mut self.rng) * (hi - lo)
    }

    fn push(&mut self, path: String, density: f64, parent: Option<usize>, rule: TagRule) -> usize {
        debug_assert!(
            !self.specs.iter().any(|s| s.path == path),
            "duplicate {path}"
        );
        self.specs.push(TagSpec {
            path,
            density,
            parent,
            rule,
        });
        self.specs.len() - 1
    }

    /// A root tag with density log-uniform in `[lo, hi]`, optionally demographic.
    fn root(&mut self, path: &str, lo: f64, hi: f64, preset: Preset) -> usize {
        let density = self.log_uniform(lo, hi).clamp(MIN_DENSITY, MAX_DENSITY);
        let rule = match preset {
            None => return self.push(path.to_owned(), density, None, TagRule::Bernoulli),
            Some((gender, age_group, tier)) => Skew {
                gender,
                age_group,
                tier,
            },
        };
        // Keep every segment's probability <= 1.
        let density = density.min(0.999 * rule.mean() / rule.max());
        self.push(path.to_owned(), density, None, TagRule::Demographic(rule))
    }

    /// A child of `parent` holding a fraction, log-uniform in `[lo, hi]`, of its members.
    fn child(&mut self, parent: usize, name: &str, lo: f64, hi: f64) -> usize {
        let parent_density = self.specs[parent].density;
        let ratio = self.log_uniform(lo, hi);
        let density = (parent_density * ratio)
            .max(MIN_DENSITY)
            .min(parent_density);
        let path = format!("{}/{name}", self.specs[parent].path);
        self.push(path, density, Some(parent), TagRule::Bernoulli)
    }

    /// A tag with the same parent as `sibling` (or none), 0.5–1.5 times its size, of whose
    /// members 50–90 % also hold `sibling`.
    fn overlap(&mut self, sibling: usize, path: String) -> usize {
        let parent = self.specs[sibling].parent;
        let universe = parent.map_or(1.0, |p| self.specs[p].density);
        let a = self.specs[sibling].density / universe;
        let overlap = self.uniform(0.5, 0.9);
        let mut b = a * self.log_uniform(0.5, 1.5);
        // Keep both draw probabilities (see `TagRule::Overlap`) <= 1.
        b = b
            .max(MIN_DENSITY / universe)
            .min(a / overlap)
            .min((1.0 - a) / (1.0 - overlap));
        let rule = TagRule::Overlap { sibling, overlap };
        self.push(path, b * universe, parent, rule)
    }

    fn overlap_child(&mut self, sibling: usize, name: &str) -> usize {
        let path = match self.specs[sibling].parent {
            Some(p) => format!("{}/{name}", self.specs[p].path),
            None => name.to_owned(),
        };
        self.overlap(sibling, path)
    }
}

/// Interest categories: name, demographic preset, subcategories (the second overlaps the first),
/// and a third level under the first subcategory.
const INTERESTS: [(&str, Preset, &str, &str); 16] = [
    (
        "sports",
        skew(MALE, YOUNG, FLAT_T),
        "fitness running football basketball swimming cycling tennis esports",
        "gym_member home_workout crossfit",
    ),
    (
        "music",
        skew(FLAT_G, YOUNG, FLAT_T),
        "pop kpop rock classical hiphop jazz folk electronic",
        "mandopop cantopop",
    ),
    (
        "travel",
        skew(FLAT_G, MID, TIER1),
        "domestic road_trip outbound hiking camping cruise theme_parks luxury_hotels",
        "beijing_trips yunnan_trips hainan_trips",
    ),
    (
        "food",
        None,
        "cooking baking coffee tea hotpot street_food fine_dining vegetarian",
        "",
    ),
    (
        "tech",
        skew(MALE, FLAT_A, TIER1),
        "smartphones gadgets laptops ai programming smart_home photography drones",
        "iphone android_flagship foldables",
    ),
    (
        "fashion",
        skew(FEMALE, YOUNG, FLAT_T),
        "womenswear accessories streetwear luxury sneakers vintage menswear kidswear",
        "",
    ),
    (
        "finance",
        skew(FLAT_G, MID, TIER1),
        "stocks funds crypto insurance real_estate savings gold forex",
        "a_shares us_stocks hk_stocks",
    ),
    (
        "gaming",
        skew(MALE, TEEN, FLAT_T),
        "mobile casual console pc moba rpg strategy shooter",
        "honor_of_kings genshin pubg_mobile",
    ),
    (
        "reading",
        None,
        "fiction web_novels history business self_help comics poetry science",
        "",
    ),
    (
        "movies",
        skew(FLAT_G, YOUNG, FLAT_T),
        "action scifi comedy drama horror animation documentary romance",
        "",
    ),
    (
        "pets",
        skew(FEMALE, FLAT_A, TIER1),
        "cats pet_food dogs fish birds reptiles small_pets pet_grooming",
        "",
    ),
    (
        "auto",
        skew(MALE, MID, FLAT_T),
        "suv car_care sedan ev motorcycles car_modding used_cars racing",
        "",
    ),
    (
        "parenting",
        skew(FEMALE, PARENT, FLAT_T),
        "infant baby_products toddler preschool primary_school teen_education pregnancy parenting_tips",
        "formula diapers",
    ),
    (
        "beauty",
        skew(FEMALE, YOUNG, FLAT_T),
        "skincare makeup fragrance haircare nails luxury_cosmetics mens_grooming anti_aging",
        "sunscreen serums masks",
    ),
    (
        "health",
        skew(FLAT_G, SENIOR, FLAT_T),
        "nutrition supplements yoga meditation sleep diet traditional_medicine mental_health",
        "",
    ),
    (
        "education",
        skew(FLAT_G, TEEN, FLAT_T),
        "languages study_abroad exams coding_courses mba vocational k12_tutoring online_courses",
        "english japanese",
    ),
];

/// Purchase categories: name, demographic preset, subcategories.
const PURCHASES: [(&str, Preset, &str); 12] = [
    (
        "electronics",
        skew(MALE, FLAT_A, FLAT_T),
        "phones computers audio cameras wearables",
    ),
    (
        "apparel",
        skew(FEMALE, FLAT_A, FLAT_T),
        "tops bottoms shoes bags underwear",
    ),
    ("grocery", None, "fresh snacks beverages dairy frozen"),
    (
        "beauty",
        skew(FEMALE, YOUNG, FLAT_T),
        "skincare makeup fragrance haircare tools",
    ),
    (
        "home",
        skew(FLAT_G, MID, FLAT_T),
        "furniture kitchen bedding decor appliances",
    ),
    ("books", None, "paper ebooks textbooks children audiobooks"),
    (
        "toys",
        skew(FLAT_G, PARENT, FLAT_T),
        "lego dolls educational outdoor puzzles",
    ),
    (
        "sports_outdoor",
        skew(MALE, YOUNG, FLAT_T),
        "fitness_gear camping_gear bikes sportswear fishing",
    ),
    (
        "jewelry",
        skew(FEMALE, MID, TIER1),
        "gold diamonds watches silver pearls",
    ),
    (
        "pharmacy",
        skew(FLAT_G, SENIOR, FLAT_T),
        "otc vitamins medical_devices prescription first_aid",
    ),
    ("pet_supplies", None, "food toys litter health accessories"),
    (
        "auto_parts",
        skew(MALE, MID, LOWER_TIER),
        "tires oil electronics accessories tools",
    ),
];

fn build_catalog() -> Vec<TagSpec> {
    let mut c = Catalog {
        specs: Vec::with_capacity(TAG_COUNT),
        rng: stream(CATALOG_SEED, Kind::Catalog, 0, 0),
    };

    for (name, preset, subs, third) in INTERESTS {
        let subs: Vec<&str> = subs.split_whitespace().collect();
        let parent = c.root(&format!("interest/{name}"), 0.02, 0.45, preset);
        let first = c.child(parent, subs[0], 0.1, 0.6);
        c.overlap_child(first, subs[1]);
        for sub in &subs[2..] {
            c.child(parent, sub, 0.01, 0.5);
        }
        for leaf in third.split_whitespace() {
            c.child(first, leaf, 0.05, 0.5);
        }
    }

    for (name, preset, subs) in PURCHASES {
        let parent = c.root(&format!("purchase/{name}"), 0.01, 0.4, preset);
        for sub in subs.split_whitespace() {
            c.child(parent, sub, 0.02, 0.6);
        }
    }

    let android = c.root("device/android", 0.6, 0.6, None);
    let ios = c.root("device/ios", 0.3, 0.36, skew(FLAT_G, FLAT_A, TIER1));
    c.overlap_child(android, "device/harmonyos");
    for brand in [
        "huawei", "xiaomi", "oppo", "vivo", "honor", "samsung", "oneplus", "realme",
    ] {
        c.child(android, brand, 0.02, 0.3);
    }
    for model in ["iphone", "ipad", "watch"] {
        c.child(ios, model, 0.1, 0.9);
    }
    let low_end = c.root("device/low_end", 0.1, 0.3, skew(FLAT_G, FLAT_A, LOWER_TIER));
    c.overlap_child(low_end, "device/old_os");
    c.root("device/high_end", 0.05, 0.2, skew(FLAT_G, FLAT_A, TIER1));
    c.root("device/foldable", 0.002, 0.01, skew(FLAT_G, MID, TIER1));
    for name in [
        "tablet",
        "wearable",
        "smart_tv",
        "5g",
        "dual_sim",
        "new_device",
        "rooted",
    ] {
        c.root(&format!("device/{name}"), MIN_DENSITY, 0.4, None);
    }

    for name in [
        "new_user",
        "onboarding",
        "active",
        "engaged",
        "power_user",
        "dormant",
    ] {
        c.root(&format!("lifecycle/{name}"), 0.01, 0.5, None);
    }
    let at_risk = c.root("lifecycle/at_risk", 0.05, 0.15, None);
    c.overlap_child(at_risk, "lifecycle/churn_risk");
    let churned = c.root("lifecycle/churned", 0.1, 0.3, None);
    c.child(churned, "win_back_target", 0.1, 0.4);
    c.overlap_child(churned, "lifecycle/uninstalled");
    c.root("lifecycle/reactivated", 0.005, 0.03, None);

    c.root("risk/blacklist", MIN_DENSITY, MIN_DENSITY, None);
    let fraud = c.root(
        "risk/fraud_suspect",
        0.001,
        0.005,
        skew(MALE, YOUNG, LOWER_TIER),
    );
    c.child(fraud, "confirmed", 0.05, 0.3);
    for name in [
        "bot_suspect",
        "chargeback",
        "account_takeover",
        "multi_account",
        "coupon_abuse",
        "high_risk_device",
        "vpn_user",
        "emulator",
        "fake_registration",
        "spam_sender",
    ] {
        c.root(&format!("risk/{name}"), MIN_DENSITY, 0.02, None);
    }

    let demographic: [(&str, Preset, f64, f64); 15] = [
        ("student", skew(FLAT_G, TEEN, FLAT_T), 0.1, 0.25),
        ("married", skew(FLAT_G, MID, FLAT_T), 0.3, 0.5),
        ("parent", skew(FEMALE, PARENT, FLAT_T), 0.2, 0.35),
        (
            "expecting_parent",
            skew(FEMALE, PARENT, FLAT_T),
            0.005,
            0.02,
        ),
        ("homeowner", skew(FLAT_G, MID, TIER1), 0.2, 0.4),
        ("car_owner", skew(MALE, MID, FLAT_T), 0.15, 0.3),
        ("high_income", skew(FLAT_G, MID, TIER1), 0.05, 0.1),
        ("low_income", skew(FLAT_G, YOUNG, LOWER_TIER), 0.2, 0.35),
        ("retiree", skew(FLAT_G, SENIOR, FLAT_T), 0.02, 0.05),
        ("white_collar", skew(FLAT_G, MID, TIER1), 0.15, 0.3),
        ("blue_collar", skew(MALE, MID, LOWER_TIER), 0.1, 0.25),
        ("freelancer", skew(FLAT_G, YOUNG, FLAT_T), 0.03, 0.08),
        ("civil_servant", skew(FLAT_G, MID, FLAT_T), 0.02, 0.05),
        ("new_city_resident", skew(FLAT_G, YOUNG, TIER1), 0.02, 0.06),
        ("rural", skew(FLAT_G, FLAT_A, LOWER_TIER), 0.1, 0.2),
    ];
    for (name, preset, lo, hi) in demographic {
        let tag = c.root(&format!("demographic/{name}"), lo, hi, preset);
        match name {
            "student" => {
                c.child(tag, "college", 0.3, 0.5);
            }
            "parent" => {
                for kid in ["infant", "preschool", "school_age", "teen"] {
                    c.child(tag, kid, 0.15, 0.4);
                }
            }
            _ => {}
        }
    }

    let consumption: [(&str, Preset); 20] = [
        ("price_sensitive", skew(FLAT_G, FLAT_A, LOWER_TIER)),
        ("luxury_buyer", skew(FEMALE, MID, TIER1)),
        ("coupon_user", None),
        ("impulse_buyer", skew(FLAT_G, YOUNG, FLAT_T)),
        ("bulk_buyer", None),
        ("night_shopper", skew(FLAT_G, YOUNG, FLAT_T)),
        ("weekend_shopper", None),
        ("installment_user", skew(FLAT_G, YOUNG, FLAT_T)),
        ("cash_on_delivery", skew(FLAT_G, FLAT_A, LOWER_TIER)),
        ("subscription_user", None),
        ("gift_buyer", None),
        ("cross_border_buyer", skew(FEMALE, FLAT_A, TIER1)),
        ("live_commerce_buyer", skew(FEMALE, FLAT_A, FLAT_T)),
        ("group_buyer", skew(FLAT_G, FLAT_A, LOWER_TIER)),
        ("flash_sale_hunter", None),
        ("repeat_buyer", None),
        ("high_order_value", skew(FLAT_G, MID, TIER1)),
        ("low_order_value", None),
        ("frequent_returner", skew(FEMALE, FLAT_A, FLAT_T)),
        ("brand_loyal", None),
    ];
    for (name, preset) in consumption {
        c.root(&format!("consumption/{name}"), 0.005, 0.5, preset);
    }

    let push = c.root("marketing/push_opt_in", 0.3, 0.6, None);
    let sms = c.overlap_child(push, "marketing/sms_opt_in");
    c.overlap_child(sms, "marketing/email_opt_in");
    c.root("marketing/wechat_follower", 0.05, 0.3, None);
    c.root("marketing/unsubscribed", 0.01, 0.05, None);
    let campaign = c.root("marketing/campaign", 0.3, 0.5, None);
    for i in 0..150 {
        let touched = c.child(campaign, &format!("c{i:03}"), 0.0005, 0.3);
        if i % 10 == 0 {
            c.child(touched, "converted", 0.01, 0.1);
        }
    }

    for (name, subs) in [
        (
            "short_video",
            &["comedy", "food", "travel", "beauty", "tech", "pets"][..],
        ),
        (
            "live_stream",
            &["gaming", "shopping", "talent", "sports"][..],
        ),
        ("long_video", &["drama", "variety", "anime"][..]),
        ("news", &["finance", "sports", "entertainment"][..]),
        ("podcast", &[][..]),
        ("music_streaming", &[][..]),
    ] {
        let tag = c.root(&format!("content/{name}"), 0.05, 0.6, None);
        for sub in subs {
            c.child(tag, sub, 0.05, 0.6);
        }
    }

    c.root("geo/commuter", 0.2, 0.4, skew(FLAT_G, MID, TIER1));
    let traveler = c.root("geo/frequent_traveler", 0.03, 0.1, skew(FLAT_G, MID, TIER1));
    c.child(traveler, "overseas", 0.1, 0.4);
    c.child(traveler, "business", 0.2, 0.5);
    c.root(
        "geo/home_city_mismatch",
        0.05,
        0.15,
        skew(FLAT_G, YOUNG, TIER1),
    );
    c.root("geo/high_speed_rail", 0.05, 0.2, None);
    c.root(
        "geo/airport_visitor",
        0.02,
        0.08,
        skew(FLAT_G, FLAT_A, TIER1),
    );
    for poi in [
        "mall",
        "gym",
        "school",
        "hospital",
        "office_park",
        "residential",
        "tourist_site",
        "university",
    ] {
        c.root(&format!("geo/poi/{poi}"), 0.01, 0.5, None);
    }

    let card = c.root("finance/credit_card", 0.2, 0.4, skew(FLAT_G, MID, TIER1));
    for level in ["platinum", "gold", "standard"] {
        c.child(card, level, 0.05, 0.6);
    }
    let loan = c.root(
        "finance/loan_applicant",
        0.05,
        0.15,
        skew(FLAT_G, YOUNG, FLAT_T),
    );
    let approved = c.child(loan, "approved", 0.4, 0.7);
    c.child(approved, "overdue", 0.03, 0.1);
    c.root(
        "finance/wealth_management",
        0.03,
        0.1,
        skew(FLAT_G, SENIOR, TIER1),
    );
    c.root("finance/bnpl_user", 0.05, 0.2, skew(FLAT_G, YOUNG, FLAT_T));
    c.root(
        "finance/crypto_holder",
        0.005,
        0.03,
        skew(MALE, YOUNG, TIER1),
    );
    for name in [
        "insurance_holder",
        "mortgage",
        "auto_loan",
        "high_credit_score",
        "low_credit_score",
        "bank_card_bound",
        "payroll_account",
        "stock_account",
    ] {
        c.root(&format!("finance/{name}"), 0.01, 0.5, None);
    }

    let influencer = c.root(
        "social/influencer",
        0.001,
        0.005,
        skew(FLAT_G, YOUNG, TIER1),
    );
    c.child(influencer, "kol", 0.05, 0.2);
    c.child(influencer, "followers_10k", 0.1, 0.3);
    let creator = c.root(
        "social/content_creator",
        0.01,
        0.05,
        skew(FLAT_G, YOUNG, FLAT_T),
    );
    c.child(creator, "livestreamer", 0.05, 0.3);
    for name in [
        "group_owner",
        "referrer",
        "invited_user",
        "active_commenter",
        "lurker",
        "has_friends",
        "community_moderator",
    ] {
        c.root(&format!("social/{name}"), MIN_DENSITY, 0.5, None);
    }

    let plus = c.root("membership/plus", 0.05, 0.15, skew(FLAT_G, MID, TIER1));
    for plan in ["annual", "monthly", "auto_renew", "family"] {
        c.child(plus, plan, 0.1, 0.6);
    }
    c.root(
        "membership/student_plan",
        0.005,
        0.02,
        skew(FLAT_G, TEEN, FLAT_T),
    );
    for name in ["trial", "expired", "partner_bundle", "gifted"] {
        c.root(&format!("membership/{name}"), 0.001, 0.05, None);
    }

    for model in [
        "churn",
        "ltv",
        "propensity_buy",
        "credit",
        "fraud",
        "engagement",
        "price_elasticity",
        "upsell",
        "cross_sell",
        "referral",
    ] {
        let high = c.root(&format!("model/{model}/high"), 0.01, 0.2, None);
        c.child(high, "top_1pct", 0.05, 0.2);
        c.root(&format!("model/{model}/medium"), 0.1, 0.4, None);
        c.root(&format!("model/{model}/low"), 0.2, 0.6, None);
    }

    for i in 0..50 {
        let exp = c.root(&format!("experiment/e{i:03}"), 0.01, 0.3, None);
        c.child(exp, "treatment", 0.45, 0.55);
    }

    let mut i = 0;
    while c.specs.len() < TAG_COUNT {
        c.root(
            &format!("app/feature/f{i:03}"),
            MIN_DENSITY,
            MAX_DENSITY,
            None,
        );
        i += 1;
    }
    assert_eq!(c.specs.len(), TAG_COUNT, "catalog overflows TAG_COUNT");
    c.specs
}

impl Generator {
    /// Members of tag `tag` (an index into [`tags`]), ascending. Generating a nested tag also
    /// generates its ancestors (and an overlapping tag its sibling), nothing else.
    ///
    /// # Panics
    /// If `tag >= TAG_COUNT`.
    pub fn tag_members(&self, tag: usize) -> Vec<u32> {
        match tags()[tag].parent {
            None => self.tag_within(tag, None),
            Some(parent) => {
                let universe = self.tag_members(parent);
                self.tag_within(tag, Some(&universe))
            }
        }
    }

    /// Calls `visit(tag, members)` for every tag in catalog order, generating each tag once:
    /// parents' members are kept (only until their last child) instead of regenerated, so this
    /// is the cheap way to load the whole catalog. Same members as [`Generator::tag_members`].
    pub fn for_each_tag(&self, mut visit: impl FnMut(usize, &[u32])) {
        let specs = tags();
        let mut last_use = vec![None; specs.len()];
        for (i, spec) in specs.iter().enumerate() {
            if let Some(p) = spec.parent {
                last_use[p] = Some(i);
            }
        }
        let mut kept: Vec<Option<Vec<u32>>> = vec![None; specs.len()];
        for (i, spec) in specs.iter().enumerate() {
            let parent = spec
                .parent
                .map(|p| kept[p].as_deref().expect("kept until the last child"));
            let members = self.tag_within(i, parent);
            visit(i, &members);
            if last_use[i].is_some() {
                kept[i] = Some(members);
            }
            if let Some(p) = spec.parent.filter(|&p| last_use[p] == Some(i)) {
                kept[p] = None;
            }
        }
    }

    /// Members of `tag` given the members of its parent (`None` for a root tag).
    fn tag_within(&self, tag: usize, parent: Option<&[u32]>) -> Vec<u32> {
        let spec = &tags()[tag];
        let universe = spec.parent.map_or(1.0, |p| tags()[p].density);
        let mut rng = stream(self.seed, Kind::Tag, tag as u64, 0);
        match &spec.rule {
            TagRule::Bernoulli => self.bernoulli(&mut rng, parent, spec.density / universe),
            TagRule::Overlap { sibling, overlap } => {
                let a = tags()[*sibling].density / universe;
                let b = spec.density / universe;
                let sibling_members = self.tag_within(*sibling, parent);
                let mut inside_rng = stream(self.seed, Kind::TagOverlap, tag as u64, 0);
                let inside =
                    rng::bernoulli_list(&mut inside_rng, &sibling_members, overlap * b / a);
                let outside = self.bernoulli(&mut rng, parent, (1.0 - overlap) * b / (1.0 - a));
                merge_outside(self.users, &inside, &outside, &sibling_members)
            }
            TagRule::Demographic(skew) => {
                assert!(parent.is_none(), "demographic tags are roots");
                self.demographic(&mut rng, skew, spec.density)
            }
        }
    }

    fn bernoulli(&self, rng: &mut Rng, parent: Option<&[u32]>, p: f64) -> Vec<u32> {
        match parent {
            None => rng::bernoulli_range(rng, self.users, p),
            Some(list) => rng::bernoulli_list(rng, list, p),
        }
    }

    /// Thinning: candidates at the highest segment probability, each kept with its own
    /// segment's share of it. Dense tags skip the candidate step and flip one coin per user.
    fn demographic(&self, rng: &mut Rng, skew: &Skew, density: f64) -> Vec<u32> {
        let segment = &self.profile().segment;
        let probs = skew.probabilities(density);
        let p_max = probs.iter().copied().fold(0.0, f64::max);
        let mut out = Vec::new();
        if p_max >= rng::SKIP_BELOW {
            let thresholds = probs.map(rng::threshold);
            out.reserve((f64::from(self.users) * density * 1.01) as usize + 1024);
            rng::keep_into(rng, &mut out, 0..self.users, |u| {
                thresholds[segment[u as usize] as usize]
            });
        } else {
            let thresholds = probs.map(|p| rng::threshold(p / p_max));
            let candidates = rng::bernoulli_range(rng, self.users, p_max);
            out.reserve(candidates.len());
            rng::keep_into(rng, &mut out, candidates, |u| {
                thresholds[segment[u as usize] as usize]
            });
        }
        out
    }
}

/// `inside ∪ (outside \ sibling)` in ascending order, for ids below `users`; the inputs are
/// ascending. Works on bitsets so the cost does not depend on how the lists interleave.
fn merge_outside(users: u32, inside: &[u32], outside: &[u32], sibling: &[u32]) -> Vec<u32> {
    let words = (users as usize).div_ceil(64);
    let bit = |u: u32| 1u64 << (u & 63);
    let mut in_sibling = vec![0u64; words];
    for &u in sibling {
        in_sibling[(u >> 6) as usize] |= bit(u);
    }
    let mut result = vec![0u64; words];
    for &u in inside {
        result[(u >> 6) as usize] |= bit(u);
    }
    for &u in outside {
        let w = (u >> 6) as usize;
        result[w] |= bit(u) & !in_sibling[w];
    }
    let mut out = Vec::with_capacity(inside.len() + outside.len());
    for (w, mut word) in result.into_iter().enumerate() {
        while word != 0 {
            out.push((w as u32) << 6 | word.trailing_zeros());
            word &= word - 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    const USERS: u32 = 100_000;

    fn is_subset(small: &[u32], big: &[u32]) -> bool {
        small.iter().all(|u| big.binary_search(u).is_ok())
    }

    #[test]
    fn catalog_shape() {
        let t = tags();
        assert_eq!(t.len(), TAG_COUNT);
        let paths: HashSet<&str> = t.iter().map(|s| s.path.as_str()).collect();
        assert_eq!(paths.len(), TAG_COUNT, "paths are unique");
        let families: HashSet<&str> = t.iter().map(TagSpec::family).collect();
        assert!((10..=20).contains(&families.len()), "{families:?}");
        for (i, spec) in t.iter().enumerate() {
            assert!(
                (MIN_DENSITY..=MAX_DENSITY).contains(&spec.density),
                "{} density {}",
                spec.path,
                spec.density
            );
            assert!(spec.path.split('/').all(|s| !s.is_empty()), "{}", spec.path);
            if let Some(p) = spec.parent {
                assert!(p < i, "parents come first");
                assert!(spec.path.starts_with(&format!("{}/", t[p].path)));
                assert!(spec.density <= t[p].density);
            }
            match &spec.rule {
                TagRule::Overlap { sibling, overlap } => {
                    assert!(*sibling < i);
                    assert_eq!(t[*sibling].parent, spec.parent);
                    assert!((0.5..=0.9).contains(overlap));
                }
                TagRule::Demographic(skew) => {
                    assert!(spec.parent.is_none());
                    let probs = skew.probabilities(spec.density);
                    assert!(probs.iter().all(|p| *p <= 1.0 && *p > 0.0));
                }
                TagRule::Bernoulli => {}
            }
        }
        assert_eq!(tag_index("interest/sports/running"), Some(2));
        assert_eq!(
            tag_index("risk/blacklist").map(|i| t[i].density),
            Some(MIN_DENSITY)
        );
        assert_eq!(tag_index("no/such/tag"), None);
    }

    #[test]
    fn densities_span_four_orders_of_magnitude() {
        let t = tags();
        let count = |f: &dyn Fn(f64) -> bool| t.iter().filter(|s| f(s.density)).count();
        assert!(count(&|d| d < 1e-3) >= 100, "{}", count(&|d| d < 1e-3));
        assert!(count(&|d| (1e-3..1e-2).contains(&d)) >= 100);
        assert!(count(&|d| (1e-2..1e-1).contains(&d)) >= 100);
        assert!(count(&|d| d >= 0.1) >= 100);
        assert!(count(&|d| d >= 0.5) >= 10);
        let rules = |f: fn(&TagRule) -> bool| t.iter().filter(|s| f(&s.rule)).count();
        assert!(rules(|r| matches!(r, TagRule::Overlap { .. })) >= 20);
        assert!(rules(|r| matches!(r, TagRule::Demographic(_))) >= 50);
        assert!(t.iter().filter(|s| s.parent.is_some()).count() >= 300);
    }

    fn all_members(g: &Generator) -> Vec<Vec<u32>> {
        let mut all = Vec::with_capacity(TAG_COUNT);
        g.for_each_tag(|i, members| {
            assert_eq!(i, all.len(), "catalog order");
            all.push(members.to_vec());
        });
        all
    }

    #[test]
    fn tag_densities_nesting_and_overlap_match_the_catalog() {
        let g = Generator::new(42, USERS);
        let all = all_members(&g);
        let n = f64::from(USERS);
        let mut checked_overlaps = 0;
        for (i, (spec, members)) in tags().iter().zip(&all).enumerate() {
            let mean = n * spec.density;
            let tolerance = 5.0 * (mean * (1.0 - spec.density)).sqrt() + 3.0;
            assert!(
                (members.len() as f64 - mean).abs() <= tolerance,
                "{}: {} members, expected {mean:.0}",
                spec.path,
                members.len()
            );
            assert!(
                members.windows(2).all(|w| w[0] < w[1]),
                "{} not sorted",
                spec.path
            );
            assert!(members.last().is_none_or(|&u| u < USERS));
            if let Some(p) = spec.parent {
                assert!(is_subset(members, &all[p]), "{} ⊄ parent", spec.path);
            }
            if let TagRule::Overlap { sibling, overlap } = spec.rule {
                let sib = &all[sibling];
                let shared = members
                    .iter()
                    .filter(|u| sib.binary_search(u).is_ok())
                    .count();
                if members.len() >= 500 {
                    let got = shared as f64 / members.len() as f64;
                    assert!(
                        (got - overlap).abs() < 0.05,
                        "{}: {got} vs {overlap}",
                        spec.path
                    );
                    checked_overlaps += 1;
                }
            }
            if i % 97 == 0 {
                assert_eq!(&g.tag_members(i), members, "{}", spec.path);
            }
        }
        assert!(checked_overlaps >= 10, "{checked_overlaps}");
        for path in [
            "interest/sports/fitness/gym_member",
            "marketing/email_opt_in",
        ] {
            let i = tag_index(path).unwrap();
            assert_eq!(g.tag_members(i), all[i], "{path}");
        }
        let leaf = tag_index("interest/sports/fitness/gym_member").unwrap();
        let top = tag_index("interest/sports").unwrap();
        assert!(is_subset(&all[leaf], &all[top]));
    }

    #[test]
    fn demographic_tags_follow_their_skew() {
        let g = Generator::new(44, USERS);
        let a = g.attributes();
        let rate = |tag: &str, pick: &dyn Fn(usize) -> bool| {
            let members: HashSet<u32> =
                g.tag_members(tag_index(tag).unwrap()).into_iter().collect();
            let group: Vec<usize> = (0..a.len()).filter(|&u| pick(u)).collect();
            let hit = group
                .iter()
                .filter(|&&u| members.contains(&(u as u32)))
                .count();
            hit as f64 / group.len() as f64
        };
        let female = rate("interest/beauty", &|u| a.gender[u] == 0);
        let male = rate("interest/beauty", &|u| a.gender[u] == 1);
        assert!(female > 3.0 * male, "beauty: female {female} male {male}");
        let teen = rate("demographic/student", &|u| a.age[u] < 18);
        let forties = rate("demographic/student", &|u| (35..45).contains(&a.age[u]));
        assert!(teen > 5.0 * forties, "student: teen {teen} 35-44 {forties}");
        let tier1 = rate("demographic/high_income", &|u| {
            dims::city_tier(a.city[u]) == 0
        });
        let tier4 = rate("demographic/high_income", &|u| {
            dims::city_tier(a.city[u]) == 3
        });
        assert!(
            tier1 > 3.0 * tier4,
            "high income: tier1 {tier1} tier4 {tier4}"
        );
    }

    #[test]
    fn tags_are_deterministic_and_seed_dependent() {
        let tag = tag_index("app/feature/f000").unwrap();
        let a = Generator::new(1, USERS).tag_members(tag);
        assert_eq!(a, Generator::new(1, USERS).tag_members(tag));
        assert_ne!(a, Generator::new(2, USERS).tag_members(tag));
        assert_ne!(a, Generator::new(1, USERS).tag_members(tag + 1));
    }

    #[test]
    fn merge_outside_drops_sibling_members() {
        let sibling = [2, 4, 6, 8, 64, 129];
        let merge = |inside: &[u32], outside: &[u32]| merge_outside(130, inside, outside, &sibling);
        assert_eq!(merge(&[4, 8], &[1, 4, 5, 6, 9]), vec![1, 4, 5, 8, 9]);
        assert_eq!(
            merge(&[], &[2, 3, 63, 64, 65, 128, 129]),
            vec![3, 63, 65, 128]
        );
        assert_eq!(merge(&[2, 129], &[]), vec![2, 129]);
    }
}
