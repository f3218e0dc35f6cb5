//! `bootstrap`: the Lambda custom runtime, and the same code on any machine (`pull`, `run`,
//! `--emulate`). This binary holds only the command line and one file per command; the work
//! is in `scar-runtime` and `scar-image`.

mod cli;
mod commands;

use clap::Parser;

fn main() -> std::process::ExitCode {
    // AWS_LAMBDA_RUNTIME_API may carry a path prefix (`127.0.0.1:9001/.rt`), which the
    // runtime client only accepts as a full URL. Rewritten here, before any thread exists.
    if let Some(url) =
        scar_runtime::lambda::runtime_api_url(std::env::var("AWS_LAMBDA_RUNTIME_API").ok())
    {
        // SAFETY: single-threaded at this point; nothing else reads the environment yet.
        unsafe { std::env::set_var("AWS_LAMBDA_RUNTIME_API", url) };
    }
    return_large_buffers_to_the_kernel();
    let cli = cli::Cli::parse();
    let logging = scar_runtime::logging::LogSettings::from_lookup(|k| std::env::var(k).ok());
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
    let code = match runtime.block_on(commands::run(cli)) {
        Ok(code) => std::process::ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(e) => {
            eprintln!("bootstrap: {e:#}");
            std::process::ExitCode::from(1)
        }
    };
    // Threads may still be reading through the runtime (a lazy tree's filler, mid-request):
    // shutting it down would fail their requests on the way out. The process ends here.
    std::mem::forget(runtime);
    code
}

/// glibc serves a freed buffer's size from its heap next time once a buffer that large was
/// freed (its mmap threshold rises, up to 32 MiB), and each thread's arena keeps what it
/// freed: the pull's and the lazy tree's multi-MiB frames, decoded on several threads, then
/// stay resident (a staged pull peaked at 97–180 MB, a lazy start on a 1.9 GB image above
/// 128 MB). A fixed threshold maps every buffer of 1 MiB or more and unmaps it when freed,
/// as musl (the shipped static binary) does anyway.
fn return_large_buffers_to_the_kernel() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only sets an allocator parameter; called before any thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}
