//! imgclient: the command-line client of imgserver — filter commands (remote or `--local`),
//! operator commands (ping, stats, health) and a multithreaded load tester (bench).
//!
//! Trust boundary: this binary sits between a user (argv, environment, local files, the
//! terminal for the password) and a network server reached only through libnetproto.so via
//! netproto-sys. It never links the protocol crate statically and contains no `unsafe`: the
//! few system calls it needs (termios, setrlimit, poll) go through nix's safe wrappers in
//! `sys`.
#![deny(unsafe_code)]

mod bench;
mod cli;
mod connect;
mod exit;
mod filter;
mod local;
mod ops;
mod session;
mod sys;

use std::io::Write;
use std::process::ExitCode;

use cli::{Cli, Command};
use connect::Connector;
use exit::{ExitKind, Failure};

fn init_logging(verbose: u8) {
    let spec = std::env::var("RUST_LOG").unwrap_or_else(|_| {
        match verbose {
            0 => "warn",
            1 => "info",
            _ => "debug",
        }
        .to_string()
    });
    env_logger::Builder::new()
        .parse_filters(&spec)
        .format(|buf, record| {
            writeln!(
                buf,
                "imgclient {} {}: {}",
                record.level(),
                record.target(),
                record.args()
            )
        })
        .init();
    // The library has its own logger copy; give it the same filter.
    netproto_sys::log_init(Some(&spec), "");
}

fn run(cli: &Cli) -> Result<ExitCode, Failure> {
    match &cli.command {
        Command::Ping { count, interval } => {
            let c = Connector::new(&cli.conn.opts())?;
            ops::ping(&c, *count, *interval)?;
        }
        Command::Stats { json } => {
            let c = Connector::new(&cli.conn.opts())?;
            ops::stats(&c, *json)?;
        }
        Command::Health => {
            let c = Connector::new(&cli.conn.opts())?;
            // Probes want a yes/no: any failure is "unhealthy" (exit 1), reasons only with -v.
            if let Err(f) = ops::health(&c, cli.verbose > 0) {
                if cli.verbose > 0 {
                    eprintln!("unhealthy: {f}");
                }
                return Ok(ExitCode::from(1));
            }
        }
        Command::Bench(args) => bench::run(args, &cli.conn)?,
        _ => filter::run(&cli.command, &cli.conn)?,
    }
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    let cli = match cli::parse_from(std::env::args_os()) {
        Ok(c) => c,
        Err(e) => {
            // --help and --version are successes; everything else is a usage error (1).
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(ExitKind::Usage.code())
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    init_logging(cli.verbose);
    match run(&cli) {
        Ok(code) => code,
        Err(f) => {
            eprintln!("imgclient: {f}");
            ExitCode::from(f.exit_code())
        }
    }
}
