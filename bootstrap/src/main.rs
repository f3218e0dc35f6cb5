use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = bootstrap::cli::Cli::parse();
    let logging = bootstrap::logging::LogSettings::from_lookup(|k| std::env::var(k).ok());
    if let Err(e) = logging.and_then(|l| l.install()) {
        eprintln!("bootstrap: {e}");
        return std::process::ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("bootstrap: cannot start the async runtime: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    match runtime.block_on(bootstrap::run(cli)) {
        Ok(code) => std::process::ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(e) => {
            eprintln!("bootstrap: {e:#}");
            std::process::ExitCode::from(1)
        }
    }
}
