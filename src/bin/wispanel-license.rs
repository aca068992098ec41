fn main() -> std::process::ExitCode {
    wispanel_license::cli::main()
}
