use clap::Parser;

fn main() {
    let cli = renewgate::cli::Cli::parse();
    match renewgate::cli::run(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("renewgate: {e:#}");
            std::process::exit(1);
        }
    }
}
