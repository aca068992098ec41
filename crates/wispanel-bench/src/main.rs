//! `wispanel-bench`: benchmarks and the fleet simulation (see the
//! library, `wispanel_bench`). Not part of the test suite.

fn main() -> std::process::ExitCode {
    wispanel_bench::main()
}
