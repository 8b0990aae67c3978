//! Scaling the iteration counts of the stress tests: `ATOMICMAP_STRESS_SCALE` (percent,
//! default 100) scales them, e.g. down for ThreadSanitizer; under Miri they are cut to 1%.

/// `base` scaled by `ATOMICMAP_STRESS_SCALE` percent (at least 1).
pub fn scaled(base: usize) -> usize {
    let percent = if cfg!(miri) {
        1
    } else {
        std::env::var("ATOMICMAP_STRESS_SCALE")
            .ok()
            .and_then(|scale| scale.parse::<usize>().ok())
            .unwrap_or(100)
    };
    (base * percent / 100).max(1)
}
