//! STUB (replaced at merge).
#![allow(dead_code)]
pub struct Message {
    pub event_type: Option<String>,
    pub message_type: Option<String>,
    pub exception_type: Option<String>,
    pub payload: bytes::Bytes,
}
#[derive(Debug, thiserror::Error)]
#[error("eventstream")]
pub struct EventStreamError;
#[derive(Default)]
pub struct EventStreamDecoder;
impl EventStreamDecoder {
    pub fn new() -> Self {
        EventStreamDecoder
    }
    pub fn push(&mut self, _chunk: &[u8]) {}
    pub fn next_message(&mut self) -> Result<Option<Message>, EventStreamError> {
        Ok(None)
    }
}
