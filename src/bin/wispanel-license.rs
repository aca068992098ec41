fn main() -> std::process::ExitCode {
    // ring, with aws-lc-rs's X25519MLKEM768 only: docs/PERFORMANCE.md.
    wispanel_license::net::tls::use_ring_with_mlkem();
    wispanel_license::cli::main()
}
