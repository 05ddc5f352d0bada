//! PUB, MPUB and DPUB: checks, then the write to the topic.

use super::Connection;
use crate::nsqd::context::PublishError;
use crate::protocol::{self, ProtocolError};

impl Connection {
    pub(super) async fn publish(
        &mut self,
        topic: &str,
        bodies: &[bytes::Bytes],
        deliver_at: i64,
        verb: &str,
    ) -> Result<(), ProtocolError> {
        if !protocol::is_valid_name(topic) {
            return Err(ProtocolError::fatal(
                "E_BAD_TOPIC",
                &format!("{verb} topic name {topic:?} is not valid"),
            ));
        }
        self.check_auth(verb, topic, "").await?;
        match self.nsqd.publish(topic, bodies, deliver_at).await {
            Ok(_) => {
                self.info.published(topic, bodies.len() as u64);
                self.respond(b"OK");
                Ok(())
            }
            Err(PublishError::BadTopic(_)) => Err(ProtocolError::fatal(
                "E_BAD_TOPIC",
                &format!("{verb} topic name {topic:?} is not valid"),
            )),
            Err(e) => Err(ProtocolError::fatal(
                &format!("E_{verb}_FAILED"),
                &format!("{verb} failed {e}"),
            )),
        }
    }
}
