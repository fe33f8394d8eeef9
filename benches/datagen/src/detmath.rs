//! Platform-independent `ln` and `exp`.
//!
//! The standard library forwards `f64::ln`/`exp`/`powf` to the platform's libm, whose last-bit
//! rounding differs between C libraries and CPUs. A single differing bit can move a sampled value
//! across a threshold, and then the data set is no longer the same on every machine. These
//! versions use only `+ - * /`, `sqrt`, `round` and bit manipulation, which IEEE 754 specifies
//! exactly (Rust never fuses a multiply and an add on its own), so every machine computes the same
//! bits. Accuracy is a few ulp, far more than a data generator needs.

/// `ln(2)` split so that `k * LN2_HI` is exact for the exponents used here (fdlibm's constants:
/// LN2_HI has its low 32 mantissa bits clear, LN2_LO = ln(2) - LN2_HI).
const LN2_HI: f64 = f64::from_bits(0x3fe6_2e42_fee0_0000);
const LN2_LO: f64 = f64::from_bits(0x3dea_39ef_3579_3c76);

/// Natural logarithm of a positive, finite, normal `x`.
pub(crate) fn ln(x: f64) -> f64 {
    assert!(
        x >= f64::MIN_POSITIVE && x.is_finite(),
        "ln domain: {x} is not a positive normal number"
    );
    let bits = x.to_bits();
    let mut exponent = ((bits >> 52) & 0x7ff) as i64 - 1023;
    // Mantissa in [1, 2), then folded into [sqrt(1/2), sqrt(2)) so that |s| <= 0.1716.
    let mut m = f64::from_bits((bits & 0x000f_ffff_ffff_ffff) | 0x3ff0_0000_0000_0000);
    if m > std::f64::consts::SQRT_2 {
        m *= 0.5;
        exponent += 1;
    }
    // ln(m) = 2 atanh(s) = 2 (s + s^3/3 + s^5/5 + ...), s = (m - 1) / (m + 1); s^24 < 1e-18.
    let s = (m - 1.0) / (m + 1.0);
    let s2 = s * s;
    let mut poly = 1.0 / 23.0;
    for k in (0..11).rev() {
        poly = poly * s2 + 1.0 / (2 * k + 1) as f64;
    }
    let e = exponent as f64;
    e * LN2_HI + (e * LN2_LO + 2.0 * s * poly)
}

/// `e^x`; returns 0 below -700 and panics above 700 (never reached by the generator).
pub(crate) fn exp(x: f64) -> f64 {
    assert!(x <= 700.0, "exp overflow: {x}");
    if x < -700.0 {
        return 0.0;
    }
    let k = (x * std::f64::consts::LOG2_E).round();
    // |r| <= ln(2)/2, so the Taylor series below converges to < 1e-22 after 18 terms.
    let r = (x - k * LN2_HI) - k * LN2_LO;
    let mut poly = 1.0;
    for n in (1..18).rev() {
        poly = poly * r / n as f64 + 1.0;
    }
    let scale = f64::from_bits(((k as i64 + 1023) as u64) << 52);
    poly * scale
}

/// `base^power` for a positive normal `base`.
pub(crate) fn powf(base: f64, power: f64) -> f64 {
    exp(power * ln(base))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ln_matches_std() {
        let mut x = f64::MIN_POSITIVE;
        while x < 1e300 {
            let want = x.ln();
            let got = ln(x);
            assert!(
                (got - want).abs() <= 4.0 * f64::EPSILON * want.abs().max(1.0),
                "ln({x}) = {got}, std says {want}"
            );
            x *= 1.37;
        }
        for x in [1.0, 0.5, 2.0, 1.0 - 1e-12, 1.0 + 1e-12, 0.999_9] {
            let err = (ln(x) - x.ln()).abs();
            assert!(
                err <= 1e-16 + 4.0 * f64::EPSILON * x.ln().abs(),
                "ln({x}) err {err}"
            );
        }
        assert_eq!(ln(1.0), 0.0);
    }

    #[test]
    fn exp_matches_std() {
        let mut x: f64 = -699.0;
        while x < 699.0 {
            let want = x.exp();
            let got = exp(x);
            assert!(
                (got - want).abs() <= 4.0 * f64::EPSILON * want,
                "exp({x}) = {got}, std says {want}"
            );
            x += 0.731;
        }
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(-800.0), 0.0);
    }

    #[test]
    fn powf_matches_std() {
        for (b, p) in [(0.3, 2.5), (2.0, 10.0), (7.5, -1.2), (0.999, 1000.0)] {
            let want = f64::powf(b, p);
            assert!((powf(b, p) - want).abs() <= 1e-13 * want, "{b}^{p}");
        }
    }
}
