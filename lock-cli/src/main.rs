//! `lockwright`: the operator's view of the locks and pools on a Redis deployment (one server, a
//! Cluster, or Sentinel's master): `list`, `pools`, `inspect`, `force-unlock`, `watch` and
//! `doctor`. It connects through the library's own code (`lock_core::RedisBackend`), so it
//! takes the same URLs, and reads the lock and pool layouts back through the library
//! (`lock_core::__operate`).
//!
//! Exit codes: 0 ok, 1 not found / nothing to do (`doctor`: a problem found), 2 usage or
//! connection error. Messages never show a password.

mod args;
mod connect;
mod doctor;
mod failure;
mod force_unlock;
mod inspect;
mod list;
mod password;
mod pool_force;
mod pool_inspect;
mod pool_scan;
mod pool_show;
mod pool_watch_state;
mod pools;
mod scan;
mod show;
mod watch;
mod watch_state;

use std::process::ExitCode;

use clap::Parser;

use crate::args::{Cli, Command};
use crate::failure::Failure;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => return report(Failure::connection(format!("cannot start: {err}"))),
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(failure) => report(failure),
    }
}

async fn run(cli: Cli) -> Result<u8, Failure> {
    let backend = connect::backend(&cli.target).await?;
    match &cli.command {
        Command::List(args) => list::run(&backend, args).await,
        Command::Pools(args) => pools::run(&backend, args).await,
        Command::Inspect(args) if args.pool => pool_inspect::run(&backend, args).await,
        Command::Inspect(args) => inspect::run(&backend, args).await,
        Command::ForceUnlock(args) if args.pool => pool_force::run(&backend, args).await,
        Command::ForceUnlock(args) => force_unlock::run(&backend, args).await,
        Command::Watch(args) => watch::run(&backend, args).await,
        Command::Doctor(args) => doctor::run(&backend, args).await,
    }
}

fn report(failure: Failure) -> ExitCode {
    eprintln!("lockwright: {failure}");
    failure.exit_code()
}
