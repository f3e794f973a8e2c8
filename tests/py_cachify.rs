//! `#[locked(py_cachify)]` against the real py-cachify 3.x (a Python process, see
//! lock-core/tests/support/python.rs) on a real redis-server: the function and py-cachify's
//! `@lock(key='job-{flag}-{name}-{extra}')` function lock the same key for the same arguments,
//! with Python's rendering of `True` and `None`.

#[path = "../lock-core/tests/support/mod.rs"]
mod support;

use std::sync::{LazyLock, OnceLock};

use lockwright::{is_locked, locked, Lock, LockError, RedisBackend, RedisConfig, SharedBackend};

use support::python::PyCachifyPeer;
use support::RedisServer;

fn server() -> &'static RedisServer {
    static SERVER: OnceLock<RedisServer> = OnceLock::new();
    SERVER.get_or_init(RedisServer::start)
}

static PYC: LazyLock<SharedBackend> = LazyLock::new(|| {
    RedisBackend::connect_blocking(RedisConfig::new(server().url()).py_cachify())
        .expect("connect in py-cachify mode")
        .shared()
});

/// While held, asks py-cachify about its decorated function with the same arguments.
#[locked(key = "job-{flag}-{name}-{extra}", py_cachify, backend = PYC)]
fn job(
    flag: bool,
    name: &str,
    extra: Option<u32>,
    py: &mut PyCachifyPeer,
) -> Result<(String, String), LockError> {
    Ok((
        py.ask(&format!("job_is_locked {} {name}", python_bool(flag))),
        py.ask(&format!("call_job {} {name}", python_bool(flag))),
    ))
}

#[locked(key = "job-{flag}-{name}-{extra}", py_cachify, backend = PYC)]
async fn async_job(
    flag: bool,
    name: &str,
    extra: Option<u32>,
    py: &mut PyCachifyPeer,
) -> Result<String, LockError> {
    Ok(py.ask(&format!("job_is_locked {} {name}", python_bool(flag))))
}

fn python_bool(flag: bool) -> &'static str {
    if flag {
        "True"
    } else {
        "False"
    }
}

#[test]
fn py_cachify_sees_a_locked_function_hold_its_decorator_key() {
    let mut py = PyCachifyPeer::start(&server().url(), "PYC-");
    let (locked, call) = job(true, "sync", None, &mut py).unwrap();
    assert_eq!((locked.as_str(), call.as_str()), ("true", "refused"));
    assert_eq!(py.ask("job_is_locked True sync"), "false");
    assert_eq!(py.ask("call_job True sync"), "done");
}

#[test]
fn a_locked_function_sees_py_cachifys_decorated_function_hold() {
    let mut py = PyCachifyPeer::start(&server().url(), "PYC-");
    // What py-cachify's decorator locks for job(False, 'held', None), taken by py-cachify.
    assert_eq!(py.ask("hold job-False-held-None-lock 60"), "held");
    assert!(is_locked!(job(false, "held", None, &mut py))
        .blocking()
        .unwrap());
    assert!(!is_locked!(job(true, "held", None, &mut py))
        .blocking()
        .unwrap());
    assert!(matches!(
        job(false, "held", None, &mut py),
        Err(LockError::Locked { .. })
    ));
    assert_eq!(py.ask("release job-False-held-None-lock"), "released");
    assert!(job(false, "held", None, &mut py).is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_async_locked_function_shares_the_decorator_key() {
    let mut py = PyCachifyPeer::start(&server().url(), "PYC-");
    assert_eq!(
        async_job(true, "async", None, &mut py).await.unwrap(),
        "true"
    );
    assert_eq!(py.ask("hold job-True-async-None-lock 60"), "held");
    assert!(is_locked!(async_job(true, "async", None, &mut py))
        .await
        .unwrap());
    assert!(matches!(
        async_job(true, "async", None, &mut py).await,
        Err(LockError::Locked { .. })
    ));
    assert!(Lock::with_backend("job-True-async-None-lock", &PYC)
        .is_locked()
        .await
        .unwrap());
}
