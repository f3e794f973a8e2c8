//! Locks shared through Redis: two workers contend for one job, fencing tokens order their
//! writes, a `#[locked]` function and `is_locked!` use the same locks, the watchdog keeps a long
//! job's lock alive, and everything is cleaned up at the end.
//!
//! Needs a Redis server: `REDIS_URL` (default `redis://127.0.0.1:6379`). For example:
//! `apt-get install redis-server && redis-server --daemonize yes && cargo run --example redis`
//!
//! Over TLS, with a server certificate from a private CA: `REDIS_URL=rediss://host:port` and
//! `REDIS_CA_FILE=ca.pem` (the CA's PEM file; without it the system's roots are trusted).

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use lockwright::{is_locked, locked, Lock, LockError, RedisBackend, RedisConfig, SharedBackend};

/// The Redis backend, for `#[locked(backend = ...)]`.
static REDIS: OnceLock<SharedBackend> = OnceLock::new();

fn redis_backend() -> &'static SharedBackend {
    REDIS.get().expect("connected in main")
}

/// The same `job-{id}` lock as the handle below: one key namespace.
#[locked(key = "job-{id}", exp = 5, backend = redis_backend())]
async fn process(id: u32) -> Result<String, LockError> {
    Ok(format!("process({id}) ran under the lock"))
}

#[tokio::main]
async fn main() -> Result<(), LockError> {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    // A prefix of our own, so the clean-up below touches nothing else.
    let prefix = format!("lockwright-example:{}:", std::process::id());
    let ca_file = std::env::var_os("REDIS_CA_FILE");
    let mut config = RedisConfig::new(url.as_str())
        .prefix(prefix.as_str())
        .default_lease(3)?;
    if let Some(ca_file) = &ca_file {
        config = config.tls_ca_file(ca_file);
    }
    let redis = RedisBackend::connect(config).await?;
    println!("connected to {}", redis.config().redacted_url());
    let backend = redis.shared();
    REDIS.set(backend.clone()).expect("set once");
    let job = Lock::with_backend("job-7", &backend)
        .nowait(false)
        .timeout(10);

    // Two workers race for the same job; the second waits for the first's release.
    let started = Instant::now();
    let workers: Vec<_> = ["alice", "bob"]
        .into_iter()
        .map(|name| {
            let job = job.clone();
            tokio::spawn(async move {
                let guard = job.acquire().await?;
                println!(
                    "{name} holds {} with fence {} after {:?}",
                    guard.key(),
                    guard.fence(),
                    round(started.elapsed())
                );
                tokio::time::sleep(Duration::from_millis(300)).await;
                guard.release().await?;
                Ok::<_, LockError>(name)
            })
        })
        .collect();
    for worker in workers {
        let name = worker.await.expect("worker panicked")?;
        println!("{name} released job-7");
    }

    // Another process would see the lock too: ask while a worker holds it.
    let guard = job.acquire().await?;
    let other = job.clone();
    let seen = tokio::spawn(async move { other.is_locked().await })
        .await
        .expect("task")?;
    println!("is job-7 locked (seen from another task)? {seen}");
    println!(
        "is_locked!(process(7)) while the handle holds job-7? {}",
        is_locked!(process(7)).await?
    );
    // Another task is another owner: refused at once (nowait). This task holds it: re-entered.
    match tokio::spawn(process(7)).await.expect("task") {
        Err(LockError::Locked { key }) => println!("process(7) from another task: {key} is held"),
        other => println!("process(7) from another task: {other:?}"),
    }
    println!("from the holding task: {}", process(7).await?);

    // No `exp`: the watchdog renews the 3 s lease every second while the guard lives.
    println!("holding job-7 for 4 s, longer than its 3 s lease...");
    tokio::time::sleep(Duration::from_secs(4)).await;
    println!(
        "still held: {}, lease left: {:?}",
        guard.is_held().await?,
        job.remaining_lease().await?
    );
    guard.release().await?;
    println!("released; locked now? {}", job.is_locked().await?);
    println!("{}", process(7).await?);

    // Clean up: the fence counter outlives the lock (for `fence_counter_ttl`, 10 min by
    // default, so fences keep growing); this example removes its own keys at once.
    let deleted =
        clean_up(&url, &prefix, ca_file.as_deref()).map_err(|source| LockError::Connection {
            target: redis.config().redacted_url(),
            source,
        })?;
    println!("cleaned up {deleted} key(s)");
    Ok(())
}

/// Deletes this example's keys, on whatever topology `url` names: every key under `prefix` on
/// one server; on a cluster or behind Sentinel, the example's two names (the lock's and its
/// fence counter's).
fn clean_up(
    url: &str,
    prefix: &str,
    ca_file: Option<&std::ffi::OsStr>,
) -> Result<u64, Box<dyn std::error::Error + Send + Sync>> {
    let names = [
        format!("{prefix}{{job-7}}"),
        format!("{prefix}{{job-7}}:fence"),
    ];
    if let Some(hosts) = url.strip_prefix("redis+cluster://") {
        let nodes: Vec<String> = hosts
            .split(',')
            .map(|host| format!("redis://{host}"))
            .collect();
        let mut conn = redis::cluster::ClusterClient::new(nodes)?.get_connection()?;
        // One DEL per name: a cluster DEL takes keys of one slot (these two share one anyway).
        let mut deleted = 0;
        for name in &names {
            deleted += redis::cmd("DEL").arg(name).query::<u64>(&mut conn)?;
        }
        return Ok(deleted);
    }
    if let Some(rest) = url.strip_prefix("redis+sentinel://") {
        // Ask the first Sentinel where the master is (the user info, if any, is the master's).
        let (userinfo, rest) = match rest.rfind('@') {
            Some(at) => (format!("{}@", &rest[..at]), &rest[at + 1..]),
            None => (String::new(), rest),
        };
        let (hosts, master_name) = rest.split_once('/').unwrap_or((rest, ""));
        let master_name = master_name.split(['/', '?']).next().unwrap_or_default();
        let sentinel = hosts.split(',').next().unwrap_or_default();
        let mut sentinel = redis::Client::open(format!("redis://{sentinel}"))?.get_connection()?;
        let (host, port): (String, u16) = redis::cmd("SENTINEL")
            .arg("get-master-addr-by-name")
            .arg(master_name)
            .query(&mut sentinel)?;
        let mut master =
            redis::Client::open(format!("redis://{userinfo}{host}:{port}"))?.get_connection()?;
        return Ok(redis::cmd("DEL").arg(&names).query(&mut master)?);
    }
    let client = match ca_file {
        Some(ca_file) => redis::Client::build_with_tls(
            url,
            redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(std::fs::read(ca_file)?),
            },
        )?,
        None => redis::Client::open(url)?,
    };
    let mut raw = client.get_connection()?;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query(&mut raw)
        .unwrap_or_default();
    if !keys.is_empty() {
        let _: Result<(), _> = redis::cmd("DEL").arg(&keys).query(&mut raw);
    }
    Ok(keys.len() as u64)
}

fn round(elapsed: Duration) -> Duration {
    Duration::from_millis(elapsed.as_millis() as u64 / 100 * 100)
}
