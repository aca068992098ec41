use clap::Parser;
use std::io::Write;
use std::process::ExitCode;
use wispanel_license::cli::DaemonCli;
use wispanel_license::config::Config;

fn main() -> ExitCode {
    let cli = DaemonCli::parse();
    if !cli.check_config {
        return wispanel_license::daemon::main(cli.config);
    }
    match Config::load(&cli.config) {
        Ok(config) => {
            // A closed stdout (`| head`) is not a configuration error.
            let _ = std::io::stdout().write_all(config.to_effective_toml().as_bytes());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("wispanel-licensed: {e}");
            ExitCode::from(wispanel_license::exit::CONFIG)
        }
    }
}
