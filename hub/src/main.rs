//! `yimen-hub`: parse arguments, call the library.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = yimen_hub::cli::Cli::parse();
    let mut out = std::io::stdout().lock();
    match yimen_hub::cli::run(cli, &mut out) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("yimen-hub: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
