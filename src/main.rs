use std::io::Write;

use clap::Parser;

fn main() {
    // Everything this process creates (database, keys, CA files, logs) is private to its user.
    // SAFETY: umask only changes this process's file-creation mask.
    unsafe { libc::umask(0o077) };
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
