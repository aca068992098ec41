//! Arbitrary text → the configuration loader must not panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wispanel_fuzz_cases::config_case;

fuzz_target!(|data: &[u8]| {
    config_case(data);
});
