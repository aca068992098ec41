//! `wispanel-bench`: benchmarks and the fleet simulation (see
//! `wispanel_license::bench`). Not part of the test suite.

fn main() -> std::process::ExitCode {
    wispanel_bench::main()
}
