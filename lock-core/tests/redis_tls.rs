//! TLS (`rediss://`), end to end against real TLS redis-servers with certificates made at test
//! time (support/tls.rs): the whole conformance suite over a verified TLS connection, then the
//! TLS-only behaviour: certificate and host name checks, mutual TLS, the development opt-out,
//! certificate files, passwords over TLS and the synchronous last-resort release.

mod conformance;
mod support;

conformance_suite!(support::tls::shared_tls_backend());

mod tls_only {
    use std::path::Path;
    use std::time::{Duration, Instant};

    use lock_core::{Lock, LockError, RedisBackend, RedisConfig};

    use crate::conformance::{key, LIVENESS};
    use crate::support::logs;
    use crate::support::tls::{
        pki, shared_tls_redis, ServerName, TlsOptions, TlsRedisServer, WRONG_NAME,
    };

    /// Connecting with `config` fails with a [`LockError::Connection`]; what it shows.
    fn connection_error(config: RedisConfig) -> (LockError, String) {
        let config = config.connect_timeout(3).unwrap();
        let start = Instant::now();
        let err = RedisBackend::connect_blocking(config).expect_err("connecting must fail");
        assert!(start.elapsed() < LIVENESS, "{:?}", start.elapsed());
        assert!(matches!(err, LockError::Connection { .. }), "{err:?}");
        let shown = crate::support::everything_shown(&err);
        (err, shown)
    }

    fn assert_shows(shown: &str, expected: &[&str]) {
        for text in expected {
            assert!(shown.contains(text), "{text:?} is missing from:\n{shown}");
        }
    }

    /// Locks, sees the lock held, releases, sees it free: the backend works.
    fn acquire_and_release(backend: &RedisBackend, name: &str) {
        let lock = Lock::with_backend(key(name), &backend.shared()).exp(30);
        let guard = lock.acquire_blocking().unwrap();
        assert!(lock.is_locked_blocking().unwrap());
        guard.release_blocking().unwrap();
        assert!(!lock.is_locked_blocking().unwrap());
    }

    fn path(path: &Path) -> String {
        path.display().to_string()
    }

    #[test]
    fn the_shared_backend_speaks_verified_tls_and_nothing_else_gets_in() {
        let (server, backend) = shared_tls_redis();
        acquire_and_release(backend, "tls-works");
        // The server listens for TLS alone: a plain connection to it cannot work, so the suite
        // above ran over TLS.
        connection_error(RedisConfig::new(format!(
            "redis://localhost:{}",
            server.port()
        )));
        // The certificate also covers the IP address.
        let by_ip = RedisConfig::new(format!("rediss://127.0.0.1:{}", server.port()))
            .tls_ca_file(server.ca_file());
        acquire_and_release(&RedisBackend::connect_blocking(by_ip).unwrap(), "tls-by-ip");
    }

    #[test]
    fn a_server_certificate_from_another_ca_is_a_connection_error_that_says_so() {
        let (server, _) = shared_tls_redis();
        let other_ca = server.other_ca_file();
        let (_, shown) = connection_error(RedisConfig::new(server.url()).tls_ca_file(&other_ca));
        assert_shows(
            &shown,
            &[
                "certificate",
                "UnknownIssuer",
                "not signed by",
                &path(&other_ca),
            ],
        );
        // Without a CA file, the system's roots are trusted: they did not sign it either.
        let (_, shown) = connection_error(RedisConfig::new(server.url()));
        assert_shows(
            &shown,
            &["certificate", "UnknownIssuer", "system", "tls_ca_file"],
        );
    }

    #[test]
    fn a_server_certificate_for_another_name_is_a_connection_error_that_says_so() {
        let server = TlsRedisServer::start(TlsOptions {
            name: ServerName::Wrong,
            ..TlsOptions::default()
        });
        // The right CA signed it; only the name is wrong.
        let (_, shown) = connection_error(server.config());
        assert_shows(
            &shown,
            &[
                "certificate",
                "not valid for name",
                "\"localhost\"",
                WRONG_NAME,
            ],
        );
        // By IP address: the certificate does not name it either.
        let by_ip = RedisConfig::new(format!("rediss://127.0.0.1:{}", server.port()))
            .tls_ca_file(server.ca_file());
        let (_, shown) = connection_error(by_ip);
        assert_shows(
            &shown,
            &["certificate", "not valid for name", "127.0.0.1", WRONG_NAME],
        );
    }

    #[test]
    fn mutual_tls_needs_the_client_certificate_and_works_with_it() {
        let server = TlsRedisServer::start(TlsOptions {
            auth_clients: true,
            ..TlsOptions::default()
        });
        let (_, shown) = connection_error(server.config());
        assert_shows(&shown, &["CertificateRequired", "tls_client_certificate"]);
        // One the server's CA did not sign is refused too.
        let (other, other_key) = server.other_client_certificate();
        let (_, shown) =
            connection_error(server.config().tls_client_certificate(&other, &other_key));
        assert_shows(&shown, &["refused the client certificate", &path(&other)]);

        let (certificate, key_file) = server.client_certificate();
        let config = server
            .config()
            .tls_client_certificate(&certificate, &key_file);
        // The key file's contents never show.
        assert!(!format!("{config:?}").contains("PRIVATE KEY"));
        let backend = RedisBackend::connect_blocking(config).unwrap();
        acquire_and_release(&backend, "mtls");
        // The blocking API and the async one use the same connections; the async one works too.
        let lock = Lock::with_backend(key("mtls-async"), &backend.shared()).exp(30);
        crate::conformance::run_without_tokio(async {
            let guard = lock.acquire().await.unwrap();
            assert!(lock.is_locked().await.unwrap());
            guard.release().await.unwrap();
        });
    }

    #[test]
    fn the_development_opt_out_connects_without_the_ca_and_warns() {
        logs::capture();
        let (shared, _) = shared_tls_redis();
        let wrong_name = TlsRedisServer::start(TlsOptions {
            name: ServerName::Wrong,
            ..TlsOptions::default()
        });
        for server in [shared, &wrong_name] {
            // Without the opt-out the certificate is refused (neither CA nor name is trusted)...
            connection_error(RedisConfig::new(server.url()));
            // ...with it, it is not checked at all.
            let config =
                RedisConfig::new(server.url()).danger_accept_invalid_certificates_for_development();
            let backend = RedisBackend::connect_blocking(config).unwrap();
            acquire_and_release(&backend, "tls-no-verify");
            logs::event_containing_all(
                "WARN",
                &[&format!("url={}", server.url()), "verification is OFF"],
                Duration::ZERO,
            )
            .expect("connecting without verification logs a warning naming the URL");
        }
    }

    #[test]
    fn tls_settings_without_a_tls_url_are_invalid_arguments() {
        let (server, _) = shared_tls_redis();
        let (certificate, key_file) = server.client_certificate();
        let plain = |url: &str| RedisConfig::new(url);
        for (what, config) in [
            (
                "CA file",
                plain("redis://127.0.0.1:6379").tls_ca_file(server.ca_file()),
            ),
            (
                "client certificate",
                plain("redis://127.0.0.1:6379").tls_client_certificate(&certificate, &key_file),
            ),
            (
                "opt-out",
                plain("redis://127.0.0.1:6379")
                    .danger_accept_invalid_certificates_for_development(),
            ),
            (
                "cluster",
                RedisConfig::cluster(["redis://127.0.0.1:7000"]).tls_ca_file(server.ca_file()),
            ),
            // The settings are wrong whatever the files hold: that is said first.
            (
                "missing CA file",
                plain("redis://127.0.0.1:6379").tls_ca_file("/nonexistent/ca.pem"),
            ),
        ] {
            let err = RedisBackend::connect_blocking(config).unwrap_err();
            assert!(
                matches!(err, LockError::InvalidArgument { name: "tls", .. }),
                "{what}: {err:?}"
            );
            assert!(err.to_string().contains("rediss://"), "{what}: {err}");
        }
    }

    #[test]
    fn unreadable_certificate_files_are_connection_errors_naming_the_file() {
        let (server, _) = shared_tls_redis();
        let (certificate, key_file) = server.client_certificate();
        let pki = pki();
        let not_pem = server.write_file("not-pem.txt", b"this is not PEM at all\n");
        let key_only = server.write_file("key-only.pem", pki.client.key.as_bytes());
        let broken = server.write_file(
            "broken.pem",
            b"-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
        );
        let not_der = server.write_file(
            "not-der.pem",
            b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        );
        let missing = server.server.dir().join("no-such-ca.pem");
        let directory = server.server.dir().to_owned();
        let cases = [
            (
                server.config().tls_ca_file(&missing),
                vec![path(&missing), "CA file".into(), "cannot read".into()],
            ),
            (
                server.config().tls_ca_file(&directory),
                vec![path(&directory), "CA file".into(), "cannot read".into()],
            ),
            (
                server.config().tls_ca_file(&not_pem),
                vec![path(&not_pem), "CA file".into(), "no PEM".into()],
            ),
            // PEM, but no certificate in it.
            (
                server.config().tls_ca_file(&key_only),
                vec![path(&key_only), "CA file".into(), "no certificate".into()],
            ),
            (
                server.config().tls_ca_file(&broken),
                vec![path(&broken), "CA file".into()],
            ),
            // PEM, but what it holds is no certificate.
            (
                server.config().tls_ca_file(&not_der),
                vec![path(&not_der), "CA file".into(), "cannot be used".into()],
            ),
            (
                server.config().tls_client_certificate(&missing, &key_file),
                vec![path(&missing), "client certificate".into()],
            ),
            (
                server.config().tls_client_certificate(&key_only, &key_file),
                vec![
                    path(&key_only),
                    "client certificate".into(),
                    "no certificate".into(),
                ],
            ),
            (
                server
                    .config()
                    .tls_client_certificate(&certificate, &missing),
                vec![path(&missing), "client key".into()],
            ),
            // The certificate where the key should be.
            (
                server
                    .config()
                    .tls_client_certificate(&certificate, &certificate),
                vec![
                    path(&certificate),
                    "client key".into(),
                    "no private key".into(),
                ],
            ),
        ];
        for (config, expected) in cases {
            let (_, shown) = connection_error(config);
            let expected: Vec<&str> = expected.iter().map(String::as_str).collect();
            assert_shows(&shown, &expected);
            // It is about a file, not the URL.
            assert!(!shown.contains("URL was refused"), "{shown}");
            // Never the key's contents.
            assert!(!shown.contains("PRIVATE KEY"), "{shown}");
        }
    }

    #[test]
    fn passwords_over_tls_work_and_never_show() {
        let server = TlsRedisServer::start(TlsOptions {
            extra_args: vec!["--requirepass".into(), "right-pass-7s".into()],
            ..TlsOptions::default()
        });
        let url = |password: &str| format!("rediss://:{password}@localhost:{}", server.port());
        let config = RedisConfig::new(url("wrong-pass-3q")).tls_ca_file(server.ca_file());
        assert_eq!(
            config.redacted_url(),
            format!("rediss://:***@localhost:{}", server.port())
        );
        let (_, shown) = connection_error(config);
        assert!(!shown.contains("wrong-pass"), "{shown}");
        assert_shows(&shown, &["rediss://:***@localhost"]);

        let config = RedisConfig::new(url("right-pass-7s")).tls_ca_file(server.ca_file());
        assert!(!format!("{config:?}").contains("right-pass"));
        let backend = RedisBackend::connect_blocking(config).unwrap();
        assert!(!format!("{backend:?}").contains("right-pass"));
        assert_eq!(
            backend.config().redacted_url(),
            format!("rediss://:***@localhost:{}", server.port())
        );
        acquire_and_release(&backend, "tls-auth");
        // The lock really is on that server.
        let mut admin = server.admin(":right-pass-7s@");
        let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut admin).unwrap();
        assert!(keys.iter().any(|k| k.contains("tls-auth")), "{keys:?}");
    }

    #[test]
    fn a_guard_dropped_by_the_shutdown_of_the_backends_given_runtime_still_releases_over_tls() {
        // As the test of that name in redis.rs, over TLS: the release of last resort opens a
        // synchronous TLS connection of its own (with the CA, and the client certificate a
        // mutual-TLS server asks for).
        logs::capture();
        let server = TlsRedisServer::start(TlsOptions {
            auth_clients: true,
            ..TlsOptions::default()
        });
        let (certificate, key_file) = server.client_certificate();
        let tls_config = || {
            server
                .config()
                .tls_client_certificate(&certificate, &key_file)
        };
        let observer = RedisBackend::connect_blocking(tls_config())
            .unwrap()
            .shared();
        for shutdown in ["drop", "shutdown_background"].repeat(3) {
            let name = key("tls-given-runtime-shutdown-guard");
            crate::support::assert_the_given_runtimes_shutdown_releases(
                tls_config(),
                &observer,
                shutdown,
                &name,
            );
            // Released by the synchronous path, not by anything else.
            logs::event_containing_all("WARN", &[&name, "releasing synchronously"], Duration::ZERO)
                .expect("the synchronous release is logged");
            assert_eq!(logs::error_naming(&name, Duration::ZERO), None);
        }
    }
}
