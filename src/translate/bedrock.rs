//! STUB (replaced by the real codec at merge).
#![allow(dead_code)]
use super::ir::*;

pub fn encode_request(_req: &ChatRequest) -> Result<Vec<u8>, TranslateError> {
    Err(TranslateError::Protocol("not yet".into()))
}
pub fn decode_error(status: u16, _error_type: Option<&str>, _body: &[u8]) -> ErrorInfo {
    ErrorInfo {
        status,
        kind: ErrorKind::from_status(status),
        message: String::new(),
        code: None,
        param: None,
    }
}
impl StreamDecoder {
    pub fn new(_model: &str) -> Self {
        StreamDecoder
    }
}

pub fn decode_response(_body: &[u8]) -> Result<ChatResponse, TranslateError> {
    Err(TranslateError::Protocol("not yet".into()))
}
pub struct StreamDecoder;
impl StreamDecode for StreamDecoder {
    fn event(&mut self, _raw: RawEvent<'_>, _out: &mut Vec<StreamEvent>) {}
    fn end(&mut self, _out: &mut Vec<StreamEvent>) {}
}
