use std::io::Write;

use clap::Parser;

fn main() {
    let cli = renewgate::cli::Cli::parse();
    let code = match renewgate::cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("renewgate: {e:#}");
            1
        }
    };
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    // Leave without running atexit handlers: OpenSSL's cleanup would otherwise race with
    // database-pool threads still closing libpq (TLS) connections, and crash the exit.
    // SAFETY: _exit only terminates the process; buffered output was flushed above.
    unsafe { libc::_exit(code) }
}
