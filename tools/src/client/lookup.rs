//! Discovery through nsqlookupd, and the tiny HTTP/1.1 GET it needs (lookupd and nsqd
//! answer small JSON documents, so one request per connection is plenty).

use super::error::{Error, Result};
use serde_json::Value;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// `GET http://{addr}{path}`; `addr` may carry an `http://` prefix. Returns status and body.
pub async fn http_get(addr: &str, path: &str, timeout: Duration) -> Result<(u16, Vec<u8>)> {
    http_request("GET", addr, path, timeout).await
}

/// `POST http://{addr}{path}` with an empty body (nsqd's topic and channel actions).
pub async fn http_post(addr: &str, path: &str, timeout: Duration) -> Result<(u16, Vec<u8>)> {
    http_request("POST", addr, path, timeout).await
}

async fn http_request(
    method: &str,
    addr: &str,
    path: &str,
    timeout: Duration,
) -> Result<(u16, Vec<u8>)> {
    let host = addr
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let url = format!("http://{host}{path}");
    let exchange = async {
        let mut stream = TcpStream::connect(&host)
            .await
            .map_err(|e| Error::io(&host, e))?;
        let request =
            format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nAccept: application/json\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| Error::io(&host, e))?;
        let mut raw = Vec::new();
        stream
            .read_to_end(&mut raw)
            .await
            .map_err(|e| Error::io(&host, e))?;
        parse_response(&raw).map_err(|reason| Error::Http {
            url: url.clone(),
            reason,
        })
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| Error::Timeout(url.clone()))?
}

/// Splits a whole HTTP/1.1 response into status and body (plain or chunked).
fn parse_response(raw: &[u8]) -> std::result::Result<(u16, Vec<u8>), String> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("incomplete HTTP response")?;
    let head = String::from_utf8_lossy(&raw[..end]);
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or("bad HTTP status line")?;
    let body = &raw[end + 4..];
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    if !chunked {
        return Ok((status, body.to_vec()));
    }
    let mut out = Vec::new();
    let mut rest = body;
    loop {
        let line_end = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("bad chunk")?;
        let size_text = String::from_utf8_lossy(&rest[..line_end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| "bad chunk size")?;
        rest = &rest[line_end + 2..];
        if size == 0 || rest.len() < size {
            return Ok((status, out));
        }
        out.extend_from_slice(&rest[..size]);
        rest = rest.get(size + 2..).unwrap_or(&[]);
    }
}

/// `GET` returning JSON; NSQ's older `{"status_code", "data"}` envelope is unwrapped.
pub async fn get_json(addr: &str, path: &str, timeout: Duration) -> Result<(u16, Value)> {
    let (status, body) = http_get(addr, path, timeout).await?;
    let value: Value = serde_json::from_slice(&body).map_err(|e| Error::Http {
        url: format!("{addr}{path}"),
        reason: format!("status {status}, body is not JSON: {e}"),
    })?;
    let value = match value.get("data") {
        Some(data) if value.get("status_code").is_some() => data.clone(),
        _ => value,
    };
    Ok((status, value))
}

/// Percent-encodes a topic or channel name for a query string (`#` of `#ephemeral`).
pub fn query_escape(name: &str) -> String {
    let mut out = String::new();
    for byte in name.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The nsqd TCP addresses (`broadcast_address:tcp_port`) lookupd at `addr` lists for
/// `topic`. A topic lookupd does not know has no producers (not an error).
pub async fn lookup_producers(addr: &str, topic: &str, timeout: Duration) -> Result<Vec<String>> {
    let path = format!("/lookup?topic={}", query_escape(topic));
    let (status, value) = get_json(addr, &path, timeout).await?;
    if status == 404 {
        return Ok(Vec::new());
    }
    if status != 200 {
        return Err(Error::Http {
            url: format!("{addr}{path}"),
            reason: format!("status {status}: {value}"),
        });
    }
    let producers = value["producers"].as_array().cloned().unwrap_or_default();
    Ok(producers
        .iter()
        .filter_map(|p| {
            let host = p["broadcast_address"].as_str()?;
            let port = p["tcp_port"].as_u64()?;
            Some(join_host_port(host, port))
        })
        .collect())
}

/// The nsqd HTTP addresses (`broadcast_address:http_port`) lookupd at `addr` lists for `topic`.
pub async fn lookup_http_producers(
    addr: &str,
    topic: &str,
    timeout: Duration,
) -> Result<Vec<String>> {
    let path = format!("/lookup?topic={}", query_escape(topic));
    let (status, value) = get_json(addr, &path, timeout).await?;
    if status != 200 {
        return Ok(Vec::new());
    }
    let producers = value["producers"].as_array().cloned().unwrap_or_default();
    Ok(producers
        .iter()
        .filter_map(|p| {
            let host = p["broadcast_address"].as_str()?;
            let port = p["http_port"].as_u64()?;
            Some(join_host_port(host, port))
        })
        .collect())
}

/// Every topic lookupd at `addr` knows (`/topics`).
pub async fn lookup_topics(addr: &str, timeout: Duration) -> Result<Vec<String>> {
    let (status, value) = get_json(addr, "/topics", timeout).await?;
    if status != 200 {
        return Err(Error::Http {
            url: format!("{addr}/topics"),
            reason: format!("status {status}: {value}"),
        });
    }
    Ok(value["topics"]
        .as_array()
        .map(|t| {
            t.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default())
}

fn join_host_port(host: &str, port: u64) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_parse() {
        let plain = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}";
        assert_eq!(parse_response(plain).unwrap(), (200, b"{}".to_vec()));
        let chunked =
            b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        assert_eq!(parse_response(chunked).unwrap(), (404, b"abcde".to_vec()));
        assert!(parse_response(b"HTTP/1.1 200").is_err());
    }

    #[test]
    fn names_escape() {
        assert_eq!(query_escape("t#ephemeral"), "t%23ephemeral");
        assert_eq!(join_host_port("::1", 4150), "[::1]:4150");
    }
}
