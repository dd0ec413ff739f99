//! `yimen-hub`: parse arguments, install logging, call the library.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = yimen_hub::cli::Cli::parse();
    // The demo tells its own story on stdout; its six nodes log warnings only.
    let default_level = match cli.command {
        yimen_hub::cli::Command::Demo { .. } => "warn",
        _ => "info",
    };
    // Logs go to stderr, at info unless RUST_LOG says otherwise; personal data is never
    // logged (masked at the source).
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let mut out = std::io::stdout().lock();
    match yimen_hub::cli::run(cli, &mut out) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            if let Some(reported) = e.downcast_ref::<yimen_node::cli::Reported>() {
                eprintln!("{reported}");
            } else {
                eprintln!("yimen-hub: {e:#}");
            }
            std::process::ExitCode::FAILURE
        }
    }
}
