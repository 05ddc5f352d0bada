//! TLS for nsqd (rustls, no OpenSSL): the server configuration NSQ's `--tls-*` flags describe,
//! the V2 connection's stream (plain until IDENTIFY `tls_v1` upgrades it in place), the facts
//! `/stats` reports about a session, and the HTTPS listener.

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{DigitallySignedStruct, DistinguishedName, ServerConfig, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

/// NSQ gives a TLS handshake (V2 upgrade or HTTPS) five seconds.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// `--tls-required`: who must speak TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TlsRequired {
    /// `false`: TLS is offered, not required.
    #[default]
    No,
    /// `tcp-https`: TCP clients must upgrade; plain HTTP is still served.
    TcpAndHttps,
    /// `true`: TCP clients must upgrade, and plain HTTP answers 403 `TLS_REQUIRED`.
    Everywhere,
}

impl TlsRequired {
    /// Parses NSQ's values (`true`/`false` in Go's bool spellings, or `tcp-https`).
    pub fn parse(value: &str) -> Result<Self, String> {
        match value.trim().to_ascii_lowercase().as_str() {
            "tcp-https" => Ok(TlsRequired::TcpAndHttps),
            "" | "0" | "f" | "false" => Ok(TlsRequired::No),
            "1" | "t" | "true" => Ok(TlsRequired::Everywhere),
            other => Err(format!("{other:?} is not one of true, false, tcp-https")),
        }
    }
}

/// `--tls-client-auth-policy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientAuthPolicy {
    /// No client certificate is asked for (NSQ's default).
    #[default]
    None,
    /// `require`: a client certificate must be presented; it is not verified.
    Require,
    /// `require-verify`: a client certificate must be presented and chain to `--tls-root-ca-file`.
    RequireVerify,
}

impl ClientAuthPolicy {
    /// Parses NSQ's values; anything else means no client certificate, as in NSQ.
    pub fn parse(value: &str) -> Self {
        match value.trim() {
            "require" => ClientAuthPolicy::Require,
            "require-verify" => ClientAuthPolicy::RequireVerify,
            _ => ClientAuthPolicy::None,
        }
    }
}

/// `--tls-min-version`. rustls speaks TLS 1.2 and 1.3 only, so anything below 1.3 means 1.2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TlsMinVersion {
    /// `ssl3.0`, `tls1.0`, `tls1.1`, `tls1.2` (NSQ's default is `tls1.0`).
    #[default]
    Tls12,
    /// `tls1.3`.
    Tls13,
}

impl TlsMinVersion {
    /// Parses NSQ's values.
    pub fn parse(value: &str) -> Result<Self, String> {
        match value.trim().to_ascii_lowercase().as_str() {
            "" | "ssl3.0" | "tls1.0" | "tls1.1" | "tls1.2" => Ok(TlsMinVersion::Tls12),
            "tls1.3" => Ok(TlsMinVersion::Tls13),
            other => Err(format!("unknown tlsVersionOption {other:?}")),
        }
    }
}

/// The TLS settings nsqd's flags resolve to.
#[derive(Debug, Clone, Default)]
pub struct TlsOptions {
    /// `--tls-cert` (PEM chain).
    pub cert: Option<PathBuf>,
    /// `--tls-key` (PEM private key).
    pub key: Option<PathBuf>,
    /// `--tls-root-ca-file`: the CAs client certificates are verified against.
    pub root_ca_file: Option<PathBuf>,
    /// `--tls-client-auth-policy`.
    pub client_auth_policy: ClientAuthPolicy,
    /// `--tls-required`.
    pub required: TlsRequired,
    /// `--tls-min-version`.
    pub min_version: TlsMinVersion,
}

/// Why the TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or holds nothing usable.
    #[error("{path}: {reason}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// rustls refused the certificate, key or verifier.
    #[error("{0}")]
    Rustls(String),
    /// A setting needs another one.
    #[error("{0}")]
    Incomplete(&'static str),
}

fn pem_error(path: &Path, reason: impl std::fmt::Display) -> TlsError {
    TlsError::Pem {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_error(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(path, e))?;
    if certs.is_empty() {
        return Err(pem_error(path, "no certificate in the file"));
    }
    Ok(certs)
}

/// The crypto nsqd uses (ring: no C toolchain beyond a compiler, no OpenSSL).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl TlsOptions {
    /// The server configuration, or `None` without a certificate (TLS off, as in NSQ).
    pub fn server_config(&self) -> Result<Option<Arc<ServerConfig>>, TlsError> {
        let (cert, key) = match (&self.cert, &self.key) {
            (None, None) => return Ok(None),
            (Some(cert), Some(key)) => (cert, key),
            _ => return Err(TlsError::Incomplete("--tls-cert and --tls-key go together")),
        };
        let chain = load_certs(cert)?;
        let key = PrivateKeyDer::from_pem_file(key).map_err(|e| pem_error(key, e))?;
        let provider = provider();
        let versions: &[&'static rustls::SupportedProtocolVersion] = match self.min_version {
            TlsMinVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
            TlsMinVersion::Tls13 => &[&rustls::version::TLS13],
        };
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(versions)
            .map_err(|e| TlsError::Rustls(e.to_string()))?;
        let builder = match self.client_auth_policy {
            ClientAuthPolicy::None => builder.with_no_client_auth(),
            ClientAuthPolicy::Require => {
                builder.with_client_cert_verifier(Arc::new(AnyClientCert { provider }))
            }
            ClientAuthPolicy::RequireVerify => {
                let path = self.root_ca_file.as_ref().ok_or(TlsError::Incomplete(
                    "--tls-client-auth-policy=require-verify needs --tls-root-ca-file",
                ))?;
                let mut roots = rustls::RootCertStore::empty();
                for ca in load_certs(path)? {
                    roots.add(ca).map_err(|e| pem_error(path, e))?;
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                        .build()
                        .map_err(|e| TlsError::Rustls(e.to_string()))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let config = builder
            .with_single_cert(chain, key)
            .map_err(|e| TlsError::Rustls(e.to_string()))?;
        Ok(Some(Arc::new(config)))
    }
}

/// `require`: Go's `RequireAnyClientCert`. A certificate must come, and the handshake must
/// prove the client holds its key, but whoever issued it is not checked.
#[derive(Debug)]
struct AnyClientCert {
    provider: Arc<CryptoProvider>,
}

impl ClientCertVerifier for AnyClientCert {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// What `/stats` (and AUTH) know about a client's TLS session.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFacts {
    /// NSQ's spelling: `TLS1.2`, `TLS1.3`.
    pub version: String,
    /// The cipher suite as NSQ v1.3.0 names it (`TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256`;
    /// its table predates TLS 1.3, whose suites it shows as `Unknown 4865`).
    pub cipher_suite: String,
    /// The ALPN protocol, if any.
    pub negotiated_protocol: String,
    /// The common name of the client certificate's subject (empty without one).
    pub common_name: String,
}

impl TlsFacts {
    /// The facts of an established server session.
    pub fn of(session: &rustls::ServerConnection) -> Self {
        let version = match session.protocol_version() {
            Some(rustls::ProtocolVersion::TLSv1_2) => "TLS1.2".to_string(),
            Some(rustls::ProtocolVersion::TLSv1_3) => "TLS1.3".to_string(),
            Some(other) => format!("{other:?}"),
            None => String::new(),
        };
        let cipher_suite = session
            .negotiated_cipher_suite()
            .map(|s| {
                let suite = s.suite();
                match (s.version().version, suite.as_str()) {
                    (rustls::ProtocolVersion::TLSv1_2, Some(name)) => name.to_string(),
                    _ => format!("Unknown {}", u16::from(suite)),
                }
            })
            .unwrap_or_default();
        let negotiated_protocol = session
            .alpn_protocol()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .unwrap_or_default();
        let common_name = session
            .peer_certificates()
            .and_then(|certs| certs.first())
            .map(|cert| common_name(cert.as_ref()))
            .unwrap_or_default();
        TlsFacts {
            version,
            cipher_suite,
            negotiated_protocol,
            common_name,
        }
    }
}

/// The subject's first common name of a DER certificate ("" when it has none or is unreadable).
pub fn common_name(der: &[u8]) -> String {
    match x509_parser::parse_x509_certificate(der) {
        Ok((_, cert)) => cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .unwrap_or_default()
            .to_string(),
        Err(_) => String::new(),
    }
}

/// A V2 client's socket: plain until IDENTIFY upgrades it to TLS in place.
pub enum ClientStream {
    /// Plain TCP.
    Plain(TcpStream),
    /// After the upgrade.
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
    /// A failed upgrade consumed the socket; every read and write fails.
    Broken,
}

impl ClientStream {
    /// Whether the upgrade happened.
    pub fn is_tls(&self) -> bool {
        matches!(self, ClientStream::Tls(_))
    }

    /// Runs the server side of the TLS handshake on this socket (NSQ's `UpgradeTLS`).
    pub async fn upgrade(&mut self, acceptor: &TlsAcceptor) -> io::Result<TlsFacts> {
        let plain = match std::mem::replace(self, ClientStream::Broken) {
            ClientStream::Plain(tcp) => tcp,
            other => {
                *self = other;
                return Err(io::Error::other("TLS is already enabled"));
            }
        };
        let tls = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(plain))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))??;
        let facts = TlsFacts::of(tls.get_ref().1);
        *self = ClientStream::Tls(Box::new(tls));
        Ok(facts)
    }
}

fn broken() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "TLS handshake failed")
}

impl AsyncRead for ClientStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            ClientStream::Broken => Poll::Ready(Err(broken())),
        }
    }
}

impl AsyncWrite for ClientStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            ClientStream::Broken => Poll::Ready(Err(broken())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_flush(cx),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            ClientStream::Broken => Poll::Ready(Err(broken())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            ClientStream::Broken => Poll::Ready(Ok(())),
        }
    }
}

/// The HTTPS listener: accepts TCP, runs each handshake in its own task (so a slow or silent
/// client delays nobody), and hands finished sessions to axum.
pub struct HttpsListener {
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    handshakes: JoinSet<Option<(tokio_rustls::server::TlsStream<TcpStream>, SocketAddr)>>,
}

impl HttpsListener {
    /// Serves TLS on `tcp` with `config`.
    pub fn new(tcp: TcpListener, config: Arc<ServerConfig>) -> Self {
        HttpsListener {
            tcp,
            acceptor: TlsAcceptor::from(config),
            handshakes: JoinSet::new(),
        }
    }
}

impl axum::serve::Listener for HttpsListener {
    type Io = tokio_rustls::server::TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            tokio::select! {
                accepted = self.tcp.accept() => match accepted {
                    Ok((tcp, peer)) => {
                        let acceptor = self.acceptor.clone();
                        self.handshakes.spawn(async move {
                            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                                Ok(Ok(tls)) => Some((tls, peer)),
                                Ok(Err(e)) => {
                                    tracing::warn!("HTTPS: TLS handshake with {peer} failed: {e}");
                                    None
                                }
                                Err(_) => {
                                    tracing::warn!("HTTPS: TLS handshake with {peer} timed out");
                                    None
                                }
                            }
                        });
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "HTTPS: accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                Some(done) = self.handshakes.join_next() => {
                    if let Ok(Some(session)) = done {
                        return session;
                    }
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

/// Plain HTTP under `--tls-required=true`: NSQ's 403 pointing at the HTTPS port.
pub async fn refuse_plain_http(
    axum::extract::State(https_port): axum::extract::State<u16>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    (
        axum::http::StatusCode::FORBIDDEN,
        [
            ("X-NSQ-Content-Type", "nsq; version=1.0"),
            ("Content-Type", "application/json; charset=utf-8"),
        ],
        format!(r#"{{"message": "TLS_REQUIRED", "https_port": {https_port}}}"#),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_values_parse_as_nsq_does() {
        assert_eq!(
            TlsRequired::parse("tcp-https"),
            Ok(TlsRequired::TcpAndHttps)
        );
        assert_eq!(TlsRequired::parse("true"), Ok(TlsRequired::Everywhere));
        assert_eq!(TlsRequired::parse("false"), Ok(TlsRequired::No));
        assert!(TlsRequired::parse("sometimes").is_err());
        assert_eq!(TlsMinVersion::parse("ssl3.0"), Ok(TlsMinVersion::Tls12));
        assert_eq!(TlsMinVersion::parse("TLS1.3"), Ok(TlsMinVersion::Tls13));
        assert!(TlsMinVersion::parse("tls2.0").is_err());
        assert_eq!(
            ClientAuthPolicy::parse("require-verify"),
            ClientAuthPolicy::RequireVerify
        );
        assert_eq!(ClientAuthPolicy::parse(""), ClientAuthPolicy::None);
    }

    #[test]
    fn certificates_load_and_name_their_subject() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut params =
            rcgen::CertificateParams::new(vec!["localhost".to_string()]).expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "client-7");
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = params.self_signed(&key).expect("cert");
        assert_eq!(common_name(cert.der()), "client-7");
        let (cert_path, key_path) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
        std::fs::write(&cert_path, cert.pem()).expect("write");
        std::fs::write(&key_path, key.serialize_pem()).expect("write");
        let options = TlsOptions {
            cert: Some(cert_path.clone()),
            key: Some(key_path),
            ..TlsOptions::default()
        };
        assert!(options.server_config().expect("config").is_some());
        let missing_ca = TlsOptions {
            client_auth_policy: ClientAuthPolicy::RequireVerify,
            ..options.clone()
        };
        assert!(matches!(
            missing_ca.server_config(),
            Err(TlsError::Incomplete(_))
        ));
        let not_a_key = TlsOptions {
            key: Some(cert_path),
            ..options
        };
        assert!(not_a_key.server_config().is_err());
        assert!(TlsOptions::default()
            .server_config()
            .expect("no TLS")
            .is_none());
    }
}
