//! Arbitrary status, headers and body → `classify` must not panic, and a gate
//! it closes lies between 1 s and 24 h from now.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wispanel_fuzz_cases::classify_case;

fuzz_target!(|data: &[u8]| {
    classify_case(data);
});
