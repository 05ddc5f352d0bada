//! HTTP(S) requests to nsqlookupd and nsqd (lookups, `/stats`, topic and channel actions)
//! through `reqwest` over rustls. An address is `host:port` (plain HTTP, as NSQ's flags take
//! it) or a full `http://` / `https://` URL. HTTPS trusts the system's roots, which
//! `SSL_CERT_FILE` / `SSL_CERT_DIR` override, as Go's HTTP client does for NSQ's tools.

use super::error::{Error, Result};
use serde_json::Value;
use std::time::Duration;

/// A reusable HTTP client with NSQ's two timeouts (`--http-client-connect-timeout`,
/// `--http-client-request-timeout`).
#[derive(Debug, Clone)]
pub struct HttpClient {
    inner: reqwest::Client,
}

impl HttpClient {
    /// A client whose connects give up after `connect_timeout` and whose requests (connect
    /// included) give up after `request_timeout`.
    pub fn new(connect_timeout: Duration, request_timeout: Duration) -> Result<HttpClient> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_native_certs::load_native_certs().certs {
            // A system certificate rustls cannot use is skipped, as Go skips it.
            let _ = roots.add(cert);
        }
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Tls(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let inner = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .connect_timeout(connect_timeout)
            .timeout(request_timeout)
            .build()
            .map_err(|e| Error::Tls(describe(e)))?;
        Ok(HttpClient { inner })
    }

    /// `GET {addr}{path}`: the status and body.
    pub async fn get(&self, addr: &str, path: &str) -> Result<(u16, Vec<u8>)> {
        self.send(reqwest::Method::GET, addr, path).await
    }

    /// `POST {addr}{path}` with an empty body (nsqd's topic and channel actions).
    pub async fn post(&self, addr: &str, path: &str) -> Result<(u16, Vec<u8>)> {
        self.send(reqwest::Method::POST, addr, path).await
    }

    /// `GET` returning JSON; NSQ's older `{"status_code", "data"}` envelope is unwrapped.
    pub async fn get_json(&self, addr: &str, path: &str) -> Result<(u16, Value)> {
        let url = url(addr, path);
        let (status, body) = self.get(addr, path).await?;
        let value: Value = serde_json::from_slice(&body).map_err(|e| Error::Http {
            url,
            reason: format!("status {status}, body is not JSON: {e}"),
        })?;
        let value = match value.get("data") {
            Some(data) if value.get("status_code").is_some() => data.clone(),
            _ => value,
        };
        Ok((status, value))
    }

    async fn send(
        &self,
        method: reqwest::Method,
        addr: &str,
        path: &str,
    ) -> Result<(u16, Vec<u8>)> {
        let url = url(addr, path);
        let failed = |e: reqwest::Error| {
            if e.is_timeout() {
                Error::Timeout(url.clone())
            } else {
                Error::Http {
                    url: url.clone(),
                    reason: describe(e),
                }
            }
        };
        let reply = self
            .inner
            .request(method, &url)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(failed)?;
        let status = reply.status().as_u16();
        let body = reply.bytes().await.map_err(failed)?;
        Ok((status, body.to_vec()))
    }
}

/// The URL of `path` on `addr`: `addr` as given when it names a scheme, else `http://addr`.
pub fn url(addr: &str, path: &str) -> String {
    let base = addr.trim_end_matches('/');
    if base.starts_with("http://") || base.starts_with("https://") {
        format!("{base}{path}")
    } else {
        format!("http://{base}{path}")
    }
}

/// reqwest's error with its causes on one line (its own text alone says only "error sending
/// request"); the URL is left out, the caller's error names it.
fn describe(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut parts = vec![e.to_string()];
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        let text = cause.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = cause.source();
    }
    parts.join(": ").replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_become_urls() {
        assert_eq!(url("127.0.0.1:4161", "/ping"), "http://127.0.0.1:4161/ping");
        assert_eq!(url("http://h:1/", "/ping"), "http://h:1/ping");
        assert_eq!(url("https://h:4152", "/stats"), "https://h:4152/stats");
    }
}
