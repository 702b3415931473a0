//! imgserver: entry point. Dispatches to the server (master), user management, local stats,
//! health and metrics, or the hidden worker mode the master fork+execs.
#![deny(unsafe_code)]

mod cache;
mod cli;
#[cfg(feature = "failpoints")]
mod failpoints;
mod health;
mod ipc;
mod logging;
mod master;
mod metrics;
mod notify;
mod ring;
mod sandbox;
mod shm;
mod signals;
mod spawn;
mod statcmd;
mod state;
mod stats;
mod statsock;
mod users;
mod worker;

use cli::{exit, CliError, Command};

fn main() {
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    // `--generate man|complete-*`: printed before anything is parsed or started.
    if let Some(code) = cliutil::generate::run(cli::command(), &argv) {
        std::process::exit(code);
    }
    let cli = match cli::parse_from(argv) {
        Ok(c) => c,
        // --help and --version are successes; everything else is a usage error, the same
        // code as imgclient's.
        Err(CliError::Clap(e)) => {
            let _ = e.print();
            std::process::exit(if e.use_stderr() { exit::USAGE } else { 0 });
        }
        Err(CliError::Config(e)) => {
            eprintln!("imgserver: {e}");
            std::process::exit(exit::USAGE);
        }
    };
    let code = match cli.command {
        None => serve(cli.serve),
        Some(Command::Serve(args)) => serve(*args),
        Some(Command::User {
            command,
            state_dir,
            users_file,
        }) => report(users::run(
            &command,
            &state::users_path(&state::resolve(state_dir.as_deref()), users_file.as_deref()),
        )),
        Some(Command::Stats { state_dir, json }) => {
            report(statcmd::run(&state::resolve(state_dir.as_deref()), json))
        }
        Some(Command::Health {
            state_dir,
            max_age,
            wait,
        }) => health::run(&state::resolve(state_dir.as_deref()), max_age, wait),
        Some(Command::Metrics { state_dir }) => {
            report(metrics::run(&state::resolve(state_dir.as_deref())))
        }
        Some(Command::Worker {
            index,
            mem_limit_mb,
            max_pixels,
            fault_injection,
            sandbox,
            uid,
            gid,
        }) => {
            logging::init_worker();
            match worker::run(worker::WorkerArgs {
                index,
                mem_limit_mb,
                max_pixels,
                fault_injection,
                sandbox,
                run_as: uid.zip(gid),
            }) {
                Ok(()) => 0,
                Err(e) => {
                    log::error!("worker {index} exiting: {e}");
                    1
                }
            }
        }
    };
    std::process::exit(code);
}

fn serve(args: cli::ServeArgs) -> i32 {
    logging::init_master(args.log_format);
    match master::serve(args) {
        Ok(code) => code,
        Err(e) => {
            log::error!("{e}");
            eprintln!("imgserver: {e}");
            e.exit_code()
        }
    }
}

fn report(r: Result<(), String>) -> i32 {
    match r {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("imgserver: {e}");
            exit::FAILURE
        }
    }
}
