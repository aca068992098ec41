//! The fuzz targets (`fuzz/`, run with `cargo fuzz` on nightly by
//! `.ci/fuzz.sh`) as a bounded, deterministic random-input loop on stable.

use wispanel_fuzz_cases::{Mutator, classify_case, classify_seeds, config_case, config_seeds};

fn run(seed: u64, iterations: usize, seeds: &[Vec<u8>], case: fn(&[u8])) {
    let seeds: Vec<&[u8]> = seeds.iter().map(Vec::as_slice).collect();
    for s in &seeds {
        case(s);
    }
    let mut m = Mutator::new(seed);
    for _ in 0..iterations {
        case(&m.input(&seeds));
    }
}

#[test]
fn classify_never_panics_and_bounds_the_gate() {
    run(1, 20_000, &classify_seeds(), classify_case);
}

#[test]
fn config_loader_never_panics() {
    run(2, 3_000, &config_seeds(), config_case);
}
