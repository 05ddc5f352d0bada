//! Discovery through nsqlookupd (`/lookup`, `/topics`) over [`HttpClient`].

use super::error::{Error, Result};
use super::http::{url, HttpClient};

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
pub async fn lookup_producers(http: &HttpClient, addr: &str, topic: &str) -> Result<Vec<String>> {
    let path = format!("/lookup?topic={}", query_escape(topic));
    let (status, value) = http.get_json(addr, &path).await?;
    if status == 404 {
        return Ok(Vec::new());
    }
    if status != 200 {
        return Err(Error::Http {
            url: url(addr, &path),
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
    http: &HttpClient,
    addr: &str,
    topic: &str,
) -> Result<Vec<String>> {
    let path = format!("/lookup?topic={}", query_escape(topic));
    let (status, value) = http.get_json(addr, &path).await?;
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
pub async fn lookup_topics(http: &HttpClient, addr: &str) -> Result<Vec<String>> {
    let (status, value) = http.get_json(addr, "/topics").await?;
    if status != 200 {
        return Err(Error::Http {
            url: url(addr, "/topics"),
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
    fn names_escape() {
        assert_eq!(query_escape("t#ephemeral"), "t%23ephemeral");
        assert_eq!(join_host_port("::1", 4150), "[::1]:4150");
    }
}
