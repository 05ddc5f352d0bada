//! Socket bytes to and from the plain protocol buffers: (de)compression and bounded writes.

use super::{CloseReason, Connection};
use std::time::Duration;
use tokio::io::AsyncWriteExt;

impl Connection {
    /// Moves raw socket bytes into the plain input buffer (through decompression, if on).
    pub(super) fn absorb(&mut self, raw: &[u8]) -> Result<(), CloseReason> {
        match &mut self.decoder {
            Some(d) => d
                .decode(raw, &mut self.input)
                .map_err(|e| format!("decompression failed: {e}")),
            None => {
                self.input.extend_from_slice(raw);
                Ok(())
            }
        }
    }

    pub(super) async fn flush(&mut self) -> Result<(), CloseReason> {
        if self.output.is_empty() {
            return Ok(());
        }
        let plain = self.output.split();
        let write = async {
            match &mut self.encoder {
                Some(e) => {
                    let mut wire = Vec::with_capacity(plain.len() / 2 + 64);
                    e.encode(&plain, &mut wire)
                        .map_err(|e| format!("compression failed: {e}"))?;
                    self.stream
                        .write_all(&wire)
                        .await
                        .map_err(|e| format!("write error: {e}"))?;
                }
                None => self
                    .stream
                    .write_all(&plain)
                    .await
                    .map_err(|e| format!("write error: {e}"))?,
            }
            // TLS holds records until flushed; plain TCP's flush does nothing.
            self.stream
                .flush()
                .await
                .map_err(|e| format!("write error: {e}"))
        };
        // A client that stops reading must not hold its connection (and our buffers) forever.
        let limit = self
            .settings
            .heartbeat
            .unwrap_or(Duration::from_secs(60))
            .max(Duration::from_secs(1));
        match tokio::time::timeout(limit, write).await {
            Ok(result) => result,
            Err(_) => Err("write timed out (client not reading)".to_string()),
        }
    }
}
