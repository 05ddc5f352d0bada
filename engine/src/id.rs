//! NSQ-style 16-byte message ids: [`MessageId`] lives in `nsq-protocol` (client and server
//! share it); this path keeps the engine's API as it was.

pub use nsq_protocol::MessageId;
