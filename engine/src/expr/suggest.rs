//! "Did you mean ...?" suggestions for unknown names.
//!
//! The planner resolves paths against the catalog; when one is unknown it asks [`closest`] for
//! the best candidate and reports, e.g., "unknown field `intrest/sports`; did you mean
//! `interest/sports`?". Distances are optimal-string-alignment edit distances (Levenshtein plus
//! adjacent transpositions, so `sprots` is one edit from `sports`), ignoring case.

/// The candidate closest to `name`, or `None` when nothing is close enough to be a plausible
/// typo.
///
/// Each candidate is compared as a whole and by its last segment against the last segment of
/// `name`, so `sports` finds `interest/sports` and `hobby/sports` finds it too. A match may be at
/// most `len / 3` edits away, where `len` is the length in chars of what is compared (`name` or
/// its last segment), and at least one edit is allowed from 3 chars on; shorter names only match
/// up to case. Ties go to whole-path matches, then to the lexicographically smallest candidate,
/// so the answer does not depend on the candidates' order.
pub fn closest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let whole = Lowered::new(name);
    let last = Lowered::new(last_segment(name));
    let mut best: Option<(usize, u8, &'a str)> = None;
    for candidate in candidates {
        // A name may be a field's last segment (`sports` -> `interest/sports`), but matching
        // only the last segment costs one edit more than matching the whole path, so that
        // `intrest/sports` finds `interest/sports` rather than any other path ending in `sports`.
        let by_last = last
            .distance(&Lowered::new(last_segment(candidate)))
            .map(|d| d + 1);
        let scores = [(0, whole.distance(&Lowered::new(candidate))), (1, by_last)];
        for (kind, distance) in scores {
            let Some(distance) = distance else { continue };
            let key = (distance, kind, candidate);
            if best.is_none_or(|b| key < b) {
                best = Some(key);
            }
        }
    }
    best.map(|(_, _, candidate)| candidate)
}

fn last_segment(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// Lower-cased chars of a name, and how many edits a match may be away.
struct Lowered {
    chars: Vec<char>,
    max_distance: usize,
}

impl Lowered {
    fn new(text: &str) -> Lowered {
        let chars: Vec<char> = text.chars().flat_map(char::to_lowercase).collect();
        let max_distance = if chars.len() < 3 { 0 } else { chars.len() / 3 };
        Lowered {
            chars,
            max_distance,
        }
    }

    /// The edit distance from `self` to `other` if it is within `self.max_distance`.
    fn distance(&self, other: &Lowered) -> Option<usize> {
        bounded_osa_distance(&self.chars, &other.chars, self.max_distance)
    }
}

/// Optimal-string-alignment distance between `a` and `b`, or `None` if it exceeds `max`.
fn bounded_osa_distance(a: &[char], b: &[char], max: usize) -> Option<usize> {
    if a.len().abs_diff(b.len()) > max {
        return None;
    }
    // Three rolling rows of the (a.len() + 1) x (b.len() + 1) table.
    let mut before: Vec<usize> = vec![0; b.len() + 1];
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current: Vec<usize> = vec![0; b.len() + 1];
    for i in 1..=a.len() {
        current[0] = i;
        let mut row_min = current[0];
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut d = (previous[j] + 1)
                .min(current[j - 1] + 1)
                .min(previous[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d = d.min(before[j - 2] + 1);
            }
            current[j] = d;
            row_min = row_min.min(d);
        }
        if row_min > max {
            return None;
        }
        std::mem::swap(&mut before, &mut previous);
        std::mem::swap(&mut previous, &mut current);
    }
    let distance = previous[b.len()];
    (distance <= max).then_some(distance)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CATALOG: &[&str] = &[
        "demographic/gender",
        "demographic/age",
        "geo/city",
        "interest/sports",
        "interest/music",
        "risk/blacklist",
        "vip",
    ];

    fn suggest(name: &str) -> Option<&'static str> {
        closest(name, CATALOG.iter().copied())
    }

    fn distance(a: &str, b: &str) -> Option<usize> {
        let a: Vec<char> = a.chars().collect();
        let b: Vec<char> = b.chars().collect();
        bounded_osa_distance(&a, &b, usize::MAX)
    }

    #[test]
    fn osa_distance() {
        assert_eq!(distance("", ""), Some(0));
        assert_eq!(distance("abc", ""), Some(3));
        assert_eq!(distance("", "ab"), Some(2));
        assert_eq!(distance("kitten", "sitting"), Some(3));
        assert_eq!(distance("sprots", "sports"), Some(1));
        assert_eq!(distance("ca", "abc"), Some(3));
        assert_eq!(distance("北京", "北京市"), Some(1));
        let chars = |s: &str| s.chars().collect::<Vec<_>>();
        assert_eq!(
            bounded_osa_distance(&chars("kitten"), &chars("sitting"), 2),
            None
        );
        assert_eq!(
            bounded_osa_distance(&chars("kitten"), &chars("sitting"), 3),
            Some(3)
        );
        assert_eq!(bounded_osa_distance(&chars("a"), &chars("abcd"), 2), None);
    }

    #[test]
    fn typos_find_the_field() {
        assert_eq!(suggest("intrest/sports"), Some("interest/sports"));
        assert_eq!(suggest("interest/sprots"), Some("interest/sports"));
        assert_eq!(suggest("risk/blaclkist"), Some("risk/blacklist"));
        assert_eq!(suggest("Demographic/Gender"), Some("demographic/gender"));
        assert_eq!(suggest("vip"), Some("vip"));
        assert_eq!(suggest("VIP"), Some("vip"));
    }

    #[test]
    fn last_segment_finds_the_full_path() {
        assert_eq!(suggest("sports"), Some("interest/sports"));
        assert_eq!(suggest("gender"), Some("demographic/gender"));
        assert_eq!(suggest("citty"), Some("geo/city"));
        assert_eq!(suggest("hobby/sports"), Some("interest/sports"));
    }

    #[test]
    fn wild_guesses_find_nothing() {
        assert_eq!(suggest("purchase_amount"), None);
        assert_eq!(suggest("x"), None);
        assert_eq!(suggest("ab"), None);
        assert_eq!(suggest(""), None);
        assert_eq!(suggest("interest/cooking"), None);
        assert_eq!(closest("sports", []), None);
        assert_eq!(suggest(&"z".repeat(100_000)), None);
    }

    #[test]
    fn ties_are_deterministic() {
        let forward = closest("ab_c", ["ab_x", "ab_y"]);
        let backward = closest("ab_c", ["ab_y", "ab_x"]);
        assert_eq!(forward, Some("ab_x"));
        assert_eq!(backward, Some("ab_x"));
        // A whole-path match beats an equally distant last-segment match...
        assert_eq!(closest("b/cat", ["x/bat", "b/cap"]), Some("b/cap"));
        // ...and a last-segment match costs one edit more than a whole-path one.
        assert_eq!(closest("b/catt", ["b/cat", "x/catt"]), Some("b/cat"));
        assert_eq!(closest("b/catt", ["b/ca", "x/catt"]), Some("x/catt"));
    }

    #[test]
    fn spelled_out_paths_are_compared_whole() {
        let fields = [
            "content/live_stream/sports",
            "interest/sports",
            "interest/travel",
        ];
        assert_eq!(closest("intrest/sports", fields), Some("interest/sports"));
        assert_eq!(
            closest("sports", fields),
            Some("content/live_stream/sports")
        );
    }
}
