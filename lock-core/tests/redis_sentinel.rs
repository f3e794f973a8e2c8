//! The Redis backend behind Sentinel, against real servers: a master, a replica and three
//! sentinels per set (support/sentinel.rs). The whole conformance suite runs on a shared set
//! through the `redis+sentinel://` URL form; failovers, credentials and `wait_replicas` get sets
//! of their own.

mod conformance;
mod support;

conformance_suite!(support::sentinel::shared_sentinel_backend());

mod sentinel_only {

    use lock_core::{Lock, RedisBackend, RedisConfig};

    use crate::conformance::key;
    use crate::support::sentinel::{shared_sentinel, MASTER_NAME};

    fn exists(conn: &mut redis::Connection, name: &str) -> bool {
        redis::cmd("EXISTS").arg(name).query::<i64>(conn).unwrap() == 1
    }

    #[test]
    fn the_sentinel_form_of_the_config_locks_on_the_master() {
        let set = shared_sentinel();
        let config = RedisConfig::sentinel(MASTER_NAME, set.sentinel_urls());
        assert!(config.redacted_url().contains(MASTER_NAME));
        let backend = RedisBackend::connect_blocking(config).unwrap();
        let name = key("sentinel-form");
        let lock = Lock::with_backend(name.as_str(), &backend.shared()).exp(30);
        let guard = lock.acquire_blocking().unwrap();
        let master = set.master_port();
        assert!(exists(
            &mut set.server_conn(master),
            &backend.lock_key(&name)
        ));
        guard.release_blocking().unwrap();
        assert!(!exists(
            &mut set.server_conn(master),
            &backend.lock_key(&name)
        ));
    }
}
