//! The `meshd` binary: all logic lives in the library; see `meshd::cli`.

fn main() -> std::process::ExitCode {
    meshd::cli::run()
}

/// The libm functions the daemon calls (`f64::log10` in the core's formulas; `ln`, `log2`,
/// `ln_1p` and `exp` in the Prometheus exporter; `powf` where an unoptimised build does not
/// fold it), defined here so the linker resolves them in the binary and, needing nothing else
/// from glibc's libm.so, does not link it at all.
///
/// Why: every agent maps the libraries it loads, and libm.so alone kept ~0.5 MiB resident in
/// each process (its relocations, resolvers and the code pages these calls fault in), 8 % of
/// the 6 MiB RSS budget, for a handful of functions. The replacements are rust-lang's `libm`
/// crate (musl's algorithms), within one ulp of glibc's results, far below what the timeouts
/// and histograms computed from them can tell. `tests/footprint.rs` checks that a running
/// agent maps no libm.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod math {
    /// Base-10 logarithm, as C's `log10`.
    #[no_mangle]
    pub extern "C" fn log10(x: f64) -> f64 {
        libm::log10(x)
    }

    /// Natural logarithm, as C's `log`.
    #[no_mangle]
    pub extern "C" fn log(x: f64) -> f64 {
        libm::log(x)
    }

    /// Base-2 logarithm, as C's `log2`.
    #[no_mangle]
    pub extern "C" fn log2(x: f64) -> f64 {
        libm::log2(x)
    }

    /// `ln(1 + x)`, as C's `log1p`.
    #[no_mangle]
    pub extern "C" fn log1p(x: f64) -> f64 {
        libm::log1p(x)
    }

    /// `e^x`, as C's `exp`.
    #[no_mangle]
    pub extern "C" fn exp(x: f64) -> f64 {
        libm::exp(x)
    }

    /// `x^y`, as C's `pow`.
    #[no_mangle]
    pub extern "C" fn pow(x: f64, y: f64) -> f64 {
        libm::pow(x, y)
    }
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    /// `f64`'s methods reach the replacements above in this binary; their results are within
    /// one ulp of the correctly rounded values (musl's `exp(1)` is one ulp above glibc's).
    #[test]
    fn math_replacements_are_within_one_ulp() {
        let cases: [(f64, f64); 7] = [
            (200f64.log10(), 2.301_029_995_663_981_3),
            (1000f64.log10(), 3.0),
            (std::f64::consts::E.ln(), 1.0),
            (1024f64.log2(), 10.0),
            (1e-10f64.ln_1p(), 9.999_999_999_500_001e-11),
            (1f64.exp(), std::f64::consts::E),
            (2f64.powf(0.5), std::f64::consts::SQRT_2),
        ];
        for (i, (got, want)) in cases.into_iter().enumerate() {
            let ulp = f64::EPSILON * want.abs();
            assert!((got - want).abs() <= ulp, "case {i}: {got} vs {want}");
        }
        // The formulas' edge: log10 of 1 member is 0, the suspicion floor's max(1, ·) takes over.
        assert_eq!(1f64.log10(), 0.0);
    }
}
