//! imgclient: the command-line client of imgserver — filter commands (remote or `--local`),
//! operator commands (ping, stats, health) and a multithreaded load tester (bench).
//!
//! Trust boundary: this binary sits between a user (argv, environment, local files, the
//! terminal for the password) and a network server reached only through libnetproto.so via
//! netproto-sys. It never links the protocol crate statically and contains no `unsafe`: the
//! password prompt and the logger come from `cliutil`, and the few system calls it needs
//! (setrlimit, poll) go through nix's safe wrappers in `sys`.
//!
//! # Modules
//!
//! `main` composes; the three features below it never import each other; everything they
//! share lives in the lower layers, whose arrows only point further down:
//!
//! ```text
//! main ──► cli (the composed command line: each feature's clap types + the shared ones)
//!  │
//!  ├──► filter/ (blur … run: command, plan, files, local)   ┐
//!  ├──► ops     (ping, stats, health, pin)                   ├ features
//!  └──► bench/  (load tester: plan, engine, schedule, report, json, plot)
//!         │
//!         ▼ shared by the features
//!       args (connection flags, durations)   spec (op specs, output names)
//!       images (image files in a directory)  control (one PING / STATS exchange)
//!       session (pipelined jobs on one connection)  json (ordered JSON objects)
//!         │
//!         ▼
//!       connect (credentials, key pinning, reconnects) ──► sys (terminal, rlimit, poll)
//!         │
//!         ▼
//!       failover (the server list: parsing, round order, skip or stop)
//!         │
//!         ▼
//!       retry (the one retry policy: what to retry, backoff, budgets, attempts, BUSY)
//!         │
//!         ▼
//!       exit (failures and exit codes)
//! ```
//!
//! The `use crate::` lines per module, which this picture must match (no cycle):
//!
//! | module | uses |
//! |---|---|
//! | `main` | cli, connect, exit, filter, ops, bench |
//! | `cli` | args, bench (BenchArgs), exit, filter (FilterCommand) |
//! | `filter` | args, connect, exit, images, session, spec |
//! | `ops` | connect, control, exit, json |
//! | `bench` | args, connect, control, exit, failover, images, json, retry, spec, sys |
//! | `args` | connect, failover |
//! | `spec`, `images`, `control` | exit |
//! | `session` | connect, exit, failover, retry, sys |
//! | `connect` | exit, failover, retry, sys |
//! | `failover` | retry |
//! | `retry` | exit |
//! | `sys`, `exit`, `json` | — |
//! | `test_server` (unit tests only: a loopback server that goes silent) | connect |
#![deny(unsafe_code)]

mod args;
mod bench;
mod cli;
mod connect;
mod control;
mod exit;
mod failover;
mod filter;
mod images;
mod json;
mod notice;
mod ops;
mod retry;
mod session;
mod spec;
mod sys;
#[cfg(test)]
mod test_server;

use std::process::ExitCode;

use cli::{Cli, Command};
use connect::Connector;
use exit::{ExitKind, Failure};

/// `-v` picks the default filter, `RUST_LOG` overrides it; the library gets the same filter
/// for its own logger copy.
fn init_logging(verbose: u8, format: cliutil::logging::Format) {
    use cliutil::logging::{filter_from_env, init_with, verbosity_filter, Style};
    let filter = filter_from_env(verbosity_filter(verbose));
    init_with(
        &filter,
        Style::Command {
            program: "imgclient".into(),
        },
        format,
    );
    netproto_sys::log_init(Some(&filter), "");
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
        Command::Health { login: false } => {
            let ready = ops::health_probe(&cli.conn.servers(), cli.conn.timeout);
            return Ok(ExitCode::from(if ready { 0 } else { 1 }));
        }
        Command::Health { login: true } => {
            let c = Connector::new(&cli.conn.opts())?;
            // Probes want a yes/no: any failure is "unhealthy" (exit 1), with its reason.
            match ops::health(&c, cli.verbose > 0) {
                Ok(rtt) => println!("healthy: logged in, ping {}", ops::fmt_ms(rtt)),
                Err(f) => {
                    println!("unhealthy: {f}");
                    return Ok(ExitCode::from(1));
                }
            }
        }
        Command::Pin { fingerprint } => {
            // One fingerprint is one server's key (or one cluster's, shared by every server
            // behind one address): pinning it under several addresses would be a guess.
            let servers = cli.conn.servers();
            let [server] = servers.as_slice() else {
                return Err(Failure::usage(
                    "pin",
                    "takes one --server address, not a list: pin each server with its own fingerprint",
                ));
            };
            let known = connect::known_servers_path(cli.conn.known_servers.as_deref())?;
            ops::pin(server, &known, fingerprint, cli.conn.timeout)?;
        }
        Command::Bench(args) => bench::run(args, &cli.conn)?,
        Command::Filter(cmd) => filter::run(cmd, &cli.conn)?,
    }
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    // `--generate man|complete-*`: printed before the real parse, which requires a subcommand.
    if let Some(code) = cliutil::generate::run(cli::command(), &argv) {
        return ExitCode::from(code as u8);
    }
    let cli = match cli::parse_from(argv) {
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
    init_logging(cli.verbose, cli.log_format);
    match run(&cli) {
        Ok(code) => code,
        Err(f) => {
            eprintln!("imgclient: {f}");
            ExitCode::from(f.exit_code())
        }
    }
}
