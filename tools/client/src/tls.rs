//! TLS for client connections (rustls): the settings go-nsq's `tls_v1` options name, and the
//! rustls configuration they make.

use super::error::{Error, Result};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use std::path::PathBuf;
use std::sync::Arc;

/// How to speak TLS to nsqd (go-nsq: `tls_v1`, `tls_root_ca_file`, `tls_insecure_skip_verify`,
/// `tls_cert`, `tls_key`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsSettings {
    /// CAs the server certificate must chain to (default: the system's roots).
    pub root_ca_file: Option<PathBuf>,
    /// Accept any server certificate (for test setups; the session is still encrypted).
    pub insecure_skip_verify: bool,
    /// A client certificate (PEM) to present, for `--tls-client-auth-policy`.
    pub cert: Option<PathBuf>,
    /// Its private key (PEM).
    pub key: Option<PathBuf>,
}

fn tls_error(reason: impl std::fmt::Display) -> Error {
    Error::Tls(reason.to_string())
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl TlsSettings {
    /// The rustls configuration these settings describe.
    pub fn client_config(&self) -> Result<Arc<ClientConfig>> {
        let provider = provider();
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(tls_error)?;
        let builder = if self.insecure_skip_verify {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyServerCert { provider }))
        } else {
            let mut roots = RootCertStore::empty();
            match &self.root_ca_file {
                Some(path) => {
                    let certs = CertificateDer::pem_file_iter(path)
                        .map_err(|e| tls_error(format!("{}: {e}", path.display())))?;
                    for cert in certs {
                        let cert =
                            cert.map_err(|e| tls_error(format!("{}: {e}", path.display())))?;
                        roots.add(cert).map_err(tls_error)?;
                    }
                }
                None => {
                    for cert in rustls_native_certs::load_native_certs().certs {
                        let _ = roots.add(cert);
                    }
                }
            }
            builder.with_root_certificates(roots)
        };
        let config = match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => {
                let chain = CertificateDer::pem_file_iter(cert)
                    .map_err(|e| tls_error(format!("{}: {e}", cert.display())))?
                    .collect::<std::result::Result<Vec<_>, _>>()
                    .map_err(|e| tls_error(format!("{}: {e}", cert.display())))?;
                let key = PrivateKeyDer::from_pem_file(key)
                    .map_err(|e| tls_error(format!("{}: {e}", key.display())))?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(tls_error)?
            }
            (None, None) => builder.with_no_client_auth(),
            _ => return Err(tls_error("tls_cert and tls_key go together")),
        };
        Ok(Arc::new(config))
    }
}

/// The name to verify the server certificate against: the host part of `host:port`.
pub(crate) fn server_name(addr: &str) -> Result<ServerName<'static>> {
    let host = match addr.rsplit_once(':') {
        Some((host, _)) => host.trim_start_matches('[').trim_end_matches(']'),
        None => addr,
    };
    ServerName::try_from(host.to_string()).map_err(|e| tls_error(format!("{addr}: {e}")))
}

/// `tls_insecure_skip_verify`: any certificate, but the handshake signatures are still checked.
#[derive(Debug)]
struct AnyServerCert {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for AnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
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
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_names_come_from_the_address() {
        assert!(matches!(
            server_name("127.0.0.1:4150"),
            Ok(ServerName::IpAddress(_))
        ));
        assert!(matches!(
            server_name("nsqd.local:4150"),
            Ok(ServerName::DnsName(_))
        ));
        assert!(TlsSettings {
            cert: Some("c.pem".into()),
            ..TlsSettings::default()
        }
        .client_config()
        .is_err());
        assert!(TlsSettings {
            insecure_skip_verify: true,
            ..TlsSettings::default()
        }
        .client_config()
        .is_ok());
    }
}
