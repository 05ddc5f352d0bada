//! Throw-away certificates made when a test runs (nothing that expires is committed), and the
//! client side of NSQ's V2 TLS upgrade over a [`RawClient`].

use crate::raw::{RawClient, Wire};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;

impl Wire for StreamOwned<ClientConnection, TcpStream> {
    fn socket(&self) -> &TcpStream {
        &self.sock
    }
}

/// A certificate and its key, as PEM files.
#[derive(Debug, Clone)]
pub struct Pair {
    /// The certificate (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
    cert_der: CertificateDer<'static>,
    key_der: Vec<u8>,
}

impl Pair {
    /// The certificate and key for a rustls client.
    pub fn for_rustls(&self) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        let key = PrivateKeyDer::try_from(self.key_der.clone()).expect("PKCS#8 key");
        (vec![self.cert_der.clone()], key)
    }
}

/// A CA, a server certificate for `127.0.0.1`/`localhost` and a client certificate
/// (common name `client-1`) signed by it, plus a client certificate from another CA.
pub struct Pki {
    _dir: tempfile::TempDir,
    /// The CA certificate (PEM).
    pub ca: PathBuf,
    /// The server's pair.
    pub server: Pair,
    /// A client pair signed by the CA, common name [`CLIENT_CN`].
    pub client: Pair,
    /// A client pair from a CA nsqd does not trust.
    pub stranger: Pair,
}

/// The common name of [`Pki::client`].
pub const CLIENT_CN: &str = "client-1";

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write PEM");
    path
}

fn ca(name: &str) -> (rcgen::Certificate, KeyPair) {
    let key = KeyPair::generate().expect("CA key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    (params.self_signed(&key).expect("CA cert"), key)
}

fn leaf(
    dir: &Path,
    name: &str,
    common_name: &str,
    sans: &[&str],
    usage: ExtendedKeyUsagePurpose,
    issuer: &(rcgen::Certificate, KeyPair),
) -> Pair {
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .expect("params");
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.extended_key_usages = vec![usage];
    let cert = params
        .signed_by(&key, &issuer.0, &issuer.1)
        .expect("sign certificate");
    Pair {
        cert: write(dir, &format!("{name}.pem"), &cert.pem()),
        key: write(dir, &format!("{name}-key.pem"), &key.serialize_pem()),
        cert_der: cert.der().clone(),
        key_der: key.serialize_der(),
    }
}

impl Pki {
    /// Makes everything in a fresh temporary directory.
    pub fn new() -> Pki {
        let dir = tempfile::tempdir().expect("temp dir");
        let authority = ca("nsq-rs test CA");
        let other = ca("someone else's CA");
        let server = leaf(
            dir.path(),
            "server",
            "localhost",
            &["localhost", "127.0.0.1"],
            ExtendedKeyUsagePurpose::ServerAuth,
            &authority,
        );
        let client = leaf(
            dir.path(),
            "client",
            CLIENT_CN,
            &[],
            ExtendedKeyUsagePurpose::ClientAuth,
            &authority,
        );
        let stranger = leaf(
            dir.path(),
            "stranger",
            "stranger",
            &[],
            ExtendedKeyUsagePurpose::ClientAuth,
            &other,
        );
        Pki {
            ca: write(dir.path(), "ca.pem", &authority.0.pem()),
            _dir: dir,
            server,
            client,
            stranger,
        }
    }

    /// nsqd flags serving TLS with the server pair.
    pub fn nsqd_flags(&self) -> Vec<String> {
        vec![
            format!("--tls-cert={}", self.server.cert.display()),
            format!("--tls-key={}", self.server.key.display()),
            format!("--tls-root-ca-file={}", self.ca.display()),
        ]
    }

    /// A rustls client trusting the CA, presenting `client` when given.
    pub fn client_config(&self, client: Option<&Pair>) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        let pem = std::fs::read(&self.ca).expect("read CA");
        let ca = rustls::pki_types::pem::PemObject::from_pem_slice(&pem).expect("CA PEM");
        roots.add(ca).expect("add CA");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots);
        Arc::new(match client {
            Some(pair) => {
                let (chain, key) = pair.for_rustls();
                builder
                    .with_client_auth_cert(chain, key)
                    .expect("client cert")
            }
            None => builder.with_no_client_auth(),
        })
    }
}

impl Default for Pki {
    fn default() -> Self {
        Pki::new()
    }
}

/// After an IDENTIFY whose answer said `tls_v1: true`: runs the client handshake on the same
/// socket. The caller then reads the `OK` that comes over TLS. Fails when the handshake does.
pub fn upgrade(client: RawClient, config: Arc<ClientConfig>) -> std::io::Result<RawClient> {
    assert!(
        client.buf.is_empty(),
        "bytes after the IDENTIFY answer, before the TLS handshake"
    );
    let tcp = client.stream.socket().try_clone()?;
    let name = ServerName::try_from("127.0.0.1").expect("server name");
    let mut connection = ClientConnection::new(config, name).map_err(std::io::Error::other)?;
    let mut sock = tcp;
    while connection.is_handshaking() {
        connection.complete_io(&mut sock)?;
    }
    Ok(RawClient {
        stream: Box::new(StreamOwned::new(connection, sock)),
        buf: client.buf,
    })
}
