//! Client settings, with go-nsq's defaults (the values users of NSQ clients expect).

use std::time::Duration;

/// Settings shared by [`Producer`](super::Producer) and [`Consumer`](super::Consumer).
///
/// `Config::default()` has go-nsq's defaults; change fields directly.
#[derive(Debug, Clone)]
pub struct Config {
    /// How many messages a consumer may hold unfinished, across all its connections (RDY).
    pub max_in_flight: u32,
    /// Every how often lookupd is polled for the topic's producers.
    pub lookupd_poll_interval: Duration,
    /// Fraction of `lookupd_poll_interval` added at random to each poll, so a fleet of
    /// consumers does not poll in step.
    pub lookupd_poll_jitter: f64,
    /// Base delay of a requeue after a failed handler; multiplied by the attempt count.
    pub default_requeue_delay: Duration,
    /// Upper bound of the requeue delay.
    pub max_requeue_delay: Duration,
    /// First backoff step; each further failure doubles it.
    pub backoff_multiplier: Duration,
    /// Upper bound of a backoff pause.
    pub max_backoff_duration: Duration,
    /// Deliveries after which a message is given up (logged and finished). 0: never.
    pub max_attempts: u16,
    /// Heartbeat interval asked of nsqd in IDENTIFY.
    pub heartbeat_interval: Duration,
    /// Message timeout asked of nsqd in IDENTIFY (`None`: the server's `--msg-timeout`).
    pub msg_timeout: Option<Duration>,
    /// How many messages the handler works on at once (go-nsq's `AddConcurrentHandlers`).
    /// With 1, messages are handled one after another in the order they arrive.
    pub handler_concurrency: usize,
    /// Send TOUCH for a message whose handler is still running at half its timeout.
    pub touch_slow_handlers: bool,
    /// Every how often RDY rotates among connections when `max_in_flight` is smaller
    /// than the number of connections.
    pub rdy_redistribute_interval: Duration,
    /// Delay before reconnecting to an nsqd given directly (not through lookupd).
    pub reconnect_interval: Duration,
    /// Timeout of a TCP or HTTP connect.
    pub dial_timeout: Duration,
    /// Timeout of an HTTP request to lookupd or nsqd, connect included.
    pub http_timeout: Duration,
    /// Ask nsqd for a snappy-compressed stream.
    pub snappy: bool,
    /// Ask nsqd for a deflate-compressed stream (when `snappy` is off).
    pub deflate: bool,
    /// Deflate level asked for (1..=9; nsqd caps it at its `--max-deflate-level`).
    pub deflate_level: u32,
    /// `client_id` in IDENTIFY (default: the short hostname).
    pub client_id: String,
    /// `hostname` in IDENTIFY.
    pub hostname: String,
    /// `user_agent` in IDENTIFY.
    pub user_agent: String,
    /// Ask nsqd to upgrade to TLS (`tls_v1`) with these settings.
    pub tls: Option<super::TlsSettings>,
    /// Sent with AUTH when nsqd says `auth_required`.
    pub auth_secret: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        let hostname = hostname();
        Config {
            max_in_flight: 1,
            lookupd_poll_interval: Duration::from_secs(60),
            lookupd_poll_jitter: 0.3,
            default_requeue_delay: Duration::from_secs(90),
            max_requeue_delay: Duration::from_secs(15 * 60),
            backoff_multiplier: Duration::from_secs(1),
            max_backoff_duration: Duration::from_secs(120),
            max_attempts: 5,
            heartbeat_interval: Duration::from_secs(30),
            msg_timeout: None,
            handler_concurrency: 1,
            touch_slow_handlers: true,
            rdy_redistribute_interval: Duration::from_secs(5),
            reconnect_interval: Duration::from_secs(15),
            dial_timeout: Duration::from_secs(1),
            http_timeout: Duration::from_secs(5),
            snappy: false,
            deflate: false,
            deflate_level: 6,
            client_id: hostname.split('.').next().unwrap_or_default().to_string(),
            hostname,
            user_agent: format!("nsq-client/{}", env!("CARGO_PKG_VERSION")),
            tls: None,
            auth_secret: None,
        }
    }
}

impl Config {
    /// How long a connection may stay silent before it counts as dead: two missed
    /// heartbeats, as nsqd itself judges clients.
    pub fn read_timeout(&self) -> Duration {
        self.heartbeat_interval.saturating_mul(2) + Duration::from_secs(1)
    }

    /// go-nsq's TLS and AUTH options by name (`tls_v1`, `tls_root_ca_file`,
    /// `tls_insecure_skip_verify`, `tls_cert`, `tls_key`, `tls_min_version`, `auth_secret`), as
    /// `--consumer-opt`/`--producer-opt name,value` give them. `None` for another name; a
    /// bad value is `Some(Err)`. Any `tls_*` option but `tls_v1,false` turns TLS on.
    pub fn set_tls_or_auth(&mut self, name: &str, value: &str) -> Option<Result<(), String>> {
        let flag = || {
            value
                .parse::<bool>()
                .map_err(|_| format!("{name}: {value:?} is not true or false"))
        };
        fn tls(tls: &mut Option<super::TlsSettings>) -> &mut super::TlsSettings {
            tls.get_or_insert_with(Default::default)
        }
        let result = match name {
            "tls_v1" => flag().map(|on| {
                if on {
                    tls(&mut self.tls);
                } else {
                    self.tls = None;
                }
            }),
            "tls_root_ca_file" => {
                tls(&mut self.tls).root_ca_file = Some(value.into());
                Ok(())
            }
            "tls_insecure_skip_verify" => {
                flag().map(|on| tls(&mut self.tls).insecure_skip_verify = on)
            }
            "tls_cert" => {
                tls(&mut self.tls).cert = Some(value.into());
                Ok(())
            }
            "tls_key" => {
                tls(&mut self.tls).key = Some(value.into());
                Ok(())
            }
            // rustls speaks TLS 1.2 and 1.3 only; accepted so go-nsq command lines work.
            "tls_min_version" => Ok(()),
            "auth_secret" => {
                self.auth_secret = Some(value.to_string());
                Ok(())
            }
            _ => return None,
        };
        Some(result)
    }

    /// The requeue delay for a message that failed on its `attempts`-th delivery.
    pub fn requeue_delay(&self, attempts: u16) -> Duration {
        self.default_requeue_delay
            .saturating_mul(u32::from(attempts.max(1)))
            .min(self.max_requeue_delay)
    }

    /// The backoff pause after `level` consecutive failures (level ≥ 1).
    pub fn backoff_duration(&self, level: u32) -> Duration {
        let factor = 1u32 << level.saturating_sub(1).min(20);
        self.backoff_multiplier
            .saturating_mul(factor)
            .min(self.max_backoff_duration)
    }
}

/// This machine's hostname, as the kernel reports it.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_and_are_capped() {
        let config = Config::default();
        assert_eq!(config.requeue_delay(1), Duration::from_secs(90));
        assert_eq!(config.requeue_delay(3), Duration::from_secs(270));
        assert_eq!(config.requeue_delay(100), Duration::from_secs(900));
        assert_eq!(config.backoff_duration(1), Duration::from_secs(1));
        assert_eq!(config.backoff_duration(3), Duration::from_secs(4));
        assert_eq!(config.backoff_duration(40), Duration::from_secs(120));
    }

    #[test]
    fn tls_and_auth_options_by_name() {
        let mut config = Config::default();
        assert!(config.set_tls_or_auth("max_in_flight", "5").is_none());
        assert_eq!(
            config.set_tls_or_auth("tls_root_ca_file", "/ca.pem"),
            Some(Ok(()))
        );
        assert_eq!(config.set_tls_or_auth("auth_secret", "s"), Some(Ok(())));
        assert_eq!(
            config.tls.as_ref().and_then(|t| t.root_ca_file.clone()),
            Some("/ca.pem".into())
        );
        assert_eq!(config.auth_secret.as_deref(), Some("s"));
        assert!(matches!(
            config.set_tls_or_auth("tls_v1", "yes"),
            Some(Err(_))
        ));
        assert_eq!(config.set_tls_or_auth("tls_v1", "false"), Some(Ok(())));
        assert!(config.tls.is_none());
    }
}
