//! TLS `redis-server`s (`--tls-port`, plain TCP off) with certificates made at test time by
//! rcgen: a test CA, a server certificate it signed for `localhost` and `127.0.0.1` (or, for the
//! wrong-name case, for another name only), a client certificate it signed (mutual TLS), and a
//! second, unrelated CA (the wrong-CA case). Every file is written into the server's own
//! directory, removed with it.

use std::path::PathBuf;
use std::sync::OnceLock;

use lock_core::{RedisBackend, RedisConfig, SharedBackend};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};

use super::{free_port, RedisServer};

/// The one name the [`ServerName::Wrong`] certificate is for.
pub const WRONG_NAME: &str = "not-this-server.invalid";

/// A certificate and its private key, PEM.
pub struct Issued {
    pub certificate: String,
    pub key: String,
}

/// Every certificate the TLS tests use, made once per test binary.
pub struct Pki {
    /// The CA that signed the server and client certificates.
    pub ca: String,
    /// A CA that signed nothing here.
    pub other_ca: String,
    /// For `localhost` and `127.0.0.1`.
    pub server: Issued,
    /// For [`WRONG_NAME`] alone.
    pub wrong_name_server: Issued,
    /// A client certificate (mutual TLS).
    pub client: Issued,
    /// A client certificate the unrelated CA signed.
    pub other_client: Issued,
}

fn ca(name: &str) -> (rcgen::Certificate, KeyPair) {
    let key = KeyPair::generate().expect("a CA key");
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let certificate = params.self_signed(&key).expect("a self-signed CA");
    (certificate, key)
}

fn issue(
    names: &[&str],
    common_name: &str,
    usage: ExtendedKeyUsagePurpose,
    (ca, ca_key): &(rcgen::Certificate, KeyPair),
) -> Issued {
    let key = KeyPair::generate().expect("a key");
    let mut params =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![usage];
    let certificate = params
        .signed_by(&key, ca, ca_key)
        .expect("a signed certificate");
    Issued {
        certificate: certificate.pem(),
        key: key.serialize_pem(),
    }
}

pub fn pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(|| {
        let test_ca = ca("lockwright test CA");
        let other_ca = ca("lockwright unrelated CA");
        Pki {
            server: issue(
                &["localhost", "127.0.0.1"],
                "localhost",
                ExtendedKeyUsagePurpose::ServerAuth,
                &test_ca,
            ),
            wrong_name_server: issue(
                &[WRONG_NAME],
                WRONG_NAME,
                ExtendedKeyUsagePurpose::ServerAuth,
                &test_ca,
            ),
            client: issue(
                &[],
                "lockwright test client",
                ExtendedKeyUsagePurpose::ClientAuth,
                &test_ca,
            ),
            other_client: issue(
                &[],
                "lockwright client of another CA",
                ExtendedKeyUsagePurpose::ClientAuth,
                &other_ca,
            ),
            ca: test_ca.0.pem(),
            other_ca: other_ca.0.pem(),
        }
    })
}

/// Which certificate the server presents.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ServerName {
    /// For `localhost` and `127.0.0.1`.
    Localhost,
    /// For [`WRONG_NAME`] only, signed by the same CA.
    Wrong,
}

/// How to start a TLS server.
pub struct TlsOptions {
    pub name: ServerName,
    /// `--tls-auth-clients yes`: clients must present a certificate the CA signed.
    pub auth_clients: bool,
    /// More `redis-server` arguments (`--requirepass`, say).
    pub extra_args: Vec<String>,
}

impl Default for TlsOptions {
    fn default() -> Self {
        TlsOptions {
            name: ServerName::Localhost,
            auth_clients: false,
            extra_args: Vec::new(),
        }
    }
}

/// A running TLS `redis-server` and the certificate files of its tests.
pub struct TlsRedisServer {
    pub server: RedisServer,
}

impl TlsRedisServer {
    pub fn start(options: TlsOptions) -> Self {
        let pki = pki();
        let port = free_port();
        let dir = RedisServer::new_dir(port);
        let write = |name: &str, contents: &str| {
            let path = dir.join(name);
            std::fs::write(&path, contents).unwrap();
            path.display().to_string()
        };
        let presented = match options.name {
            ServerName::Localhost => &pki.server,
            ServerName::Wrong => &pki.wrong_name_server,
        };
        let mut args = vec![
            "--tls-cert-file".to_owned(),
            write("server.pem", &presented.certificate),
            "--tls-key-file".to_owned(),
            write("server-key.pem", &presented.key),
            "--tls-ca-cert-file".to_owned(),
            write("ca.pem", &pki.ca),
            "--tls-auth-clients".to_owned(),
            if options.auth_clients { "yes" } else { "no" }.to_owned(),
        ];
        write("other-ca.pem", &pki.other_ca);
        write("client.pem", &pki.client.certificate);
        write("client-key.pem", &pki.client.key);
        write("other-client.pem", &pki.other_client.certificate);
        write("other-client-key.pem", &pki.other_client.key);
        args.extend(options.extra_args);
        TlsRedisServer {
            server: RedisServer::start_in(port, dir, args, true),
        }
    }

    pub fn port(&self) -> u16 {
        self.server.port
    }

    /// `rediss://localhost:PORT`.
    pub fn url(&self) -> String {
        format!("rediss://localhost:{}", self.port())
    }

    /// The CA that signed the server's (and the client's) certificate.
    pub fn ca_file(&self) -> PathBuf {
        self.server.dir().join("ca.pem")
    }

    /// A CA that did not sign the server's certificate.
    pub fn other_ca_file(&self) -> PathBuf {
        self.server.dir().join("other-ca.pem")
    }

    /// The client certificate and its key (signed by [`ca_file`](Self::ca_file)'s CA).
    pub fn client_certificate(&self) -> (PathBuf, PathBuf) {
        (
            self.server.dir().join("client.pem"),
            self.server.dir().join("client-key.pem"),
        )
    }

    /// A client certificate and key that the unrelated CA signed.
    pub fn other_client_certificate(&self) -> (PathBuf, PathBuf) {
        (
            self.server.dir().join("other-client.pem"),
            self.server.dir().join("other-client-key.pem"),
        )
    }

    /// Writes a file of the test's own into the server's directory.
    pub fn write_file(&self, name: &str, contents: &[u8]) -> PathBuf {
        let path = self.server.dir().join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }

    /// Settings that trust the test CA (`rediss://localhost:PORT` + `tls_ca_file`).
    pub fn config(&self) -> RedisConfig {
        RedisConfig::new(self.url()).tls_ca_file(self.ca_file())
    }

    /// A raw redis-rs connection (the CA and the client certificate, for any server here;
    /// `userinfo` like `":password@"` or empty).
    pub fn admin(&self, userinfo: &str) -> redis::Connection {
        let read = |path: PathBuf| std::fs::read(path).unwrap();
        let (certificate, key) = self.client_certificate();
        let client = redis::Client::build_with_tls(
            format!("rediss://{userinfo}localhost:{}", self.port()),
            redis::TlsCertificates {
                client_tls: Some(redis::ClientTlsConfig {
                    client_cert: read(certificate),
                    client_key: read(key),
                }),
                root_cert: Some(read(self.ca_file())),
            },
        )
        .expect("a TLS client");
        client.get_connection().expect("a raw TLS connection")
    }
}

/// One TLS server (no client certificates asked) and one backend on it, trusting the test CA,
/// shared by the tests of a binary (each test uses its own keys).
pub fn shared_tls_redis() -> &'static (TlsRedisServer, RedisBackend) {
    static SHARED: OnceLock<(TlsRedisServer, RedisBackend)> = OnceLock::new();
    SHARED.get_or_init(|| {
        let server = TlsRedisServer::start(TlsOptions::default());
        let backend =
            RedisBackend::connect_blocking(server.config()).expect("connect to the TLS server");
        (server, backend)
    })
}

pub fn shared_tls_backend() -> SharedBackend {
    shared_tls_redis().1.shared()
}
