//! From the global options to a connected [`RedisBackend`] (the library's own connection code,
//! so every URL form it takes works here), and to plain connections to each master.

use std::io::IsTerminal;
use std::time::Duration;

use lock_core::__operate::MasterServer;
use lock_core::{RedisBackend, RedisConfig};
use redis::aio::MultiplexedConnection;
use redis::AsyncConnectionConfig;

use crate::args::Target;
use crate::failure::Failure;
use crate::password;

/// The environment variable redis-cli reads a password from; read here too.
pub const PASSWORD_VARIABLE: &str = "REDISCLI_AUTH";

/// Connects the library's backend to the deployment the options name (and so checks the URL,
/// the password and that the server answers, within the timeout).
pub async fn backend(target: &Target) -> Result<RedisBackend, Failure> {
    let url = target.url.clone().ok_or_else(|| {
        Failure::usage("no Redis URL: give --url URL or set REDIS_URL (see --help for the forms)")
    })?;
    let url = match given_password(target)? {
        Some(password) => password::into_url(&url, &password)?,
        None => url,
    };
    let timeout = timeout(target)?;
    let mut config = RedisConfig::new(url)
        .prefix(&target.prefix)
        .pool_size(1)
        .connect_timeout(timeout)?
        .command_timeout(timeout)?;
    if let Some(ca) = &target.tls_ca_file {
        config = config.tls_ca_file(ca);
    }
    Ok(RedisBackend::connect(config).await?)
}

/// The password from `--ask-password` (a prompt on the terminal, not echoed) or `REDISCLI_AUTH`.
fn given_password(target: &Target) -> Result<Option<String>, Failure> {
    if target.ask_password {
        if !std::io::stdin().is_terminal() {
            return Err(Failure::usage(
                "--ask-password needs a terminal; give the password in REDISCLI_AUTH instead",
            ));
        }
        return rpassword::prompt_password("Redis password: ")
            .map(Some)
            .map_err(|err| Failure::usage(format!("cannot read the password: {err}")));
    }
    Ok(std::env::var(PASSWORD_VARIABLE)
        .ok()
        .filter(|password| !password.is_empty()))
}

fn timeout(target: &Target) -> Result<Duration, Failure> {
    Duration::try_from_secs_f64(target.timeout)
        .ok()
        .filter(|timeout| !timeout.is_zero())
        .ok_or_else(|| {
            Failure::usage(format!(
                "--timeout {} is not a positive number of seconds",
                target.timeout
            ))
        })
}

/// Every master of the deployment (one, or each master of a cluster).
pub async fn masters(backend: &RedisBackend) -> Result<Vec<MasterServer>, Failure> {
    Ok(backend.masters().await?)
}

/// A plain connection to one master, bounded by the backend's timeouts.
pub async fn open(
    backend: &RedisBackend,
    master: &MasterServer,
) -> Result<MultiplexedConnection, Failure> {
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(backend.connect_timeout())
        .set_response_timeout(backend.command_timeout());
    master
        .client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .map_err(|err| Failure::connection(format!("cannot connect to {}: {err}", master.address)))
}

/// A failed command on one master, as a connection failure naming the server.
pub fn command_failed(master: &MasterServer, what: &str, err: redis::RedisError) -> Failure {
    Failure::connection(format!("{what} failed on {}: {err}", master.address))
}
