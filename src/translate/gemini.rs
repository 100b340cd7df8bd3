//! STUB (replaced by the real codec at merge).
#![allow(dead_code)]
use super::ir::*;

pub fn decode_request(
    _body: &[u8],
    _model: &str,
    _stream: bool,
) -> Result<ChatRequest, TranslateError> {
    Err(TranslateError::Protocol("not yet".into()))
}
pub fn encode_request(_req: &ChatRequest) -> Result<Vec<u8>, TranslateError> {
    Err(TranslateError::Protocol("not yet".into()))
}
pub fn decode_error(status: u16, _body: &[u8]) -> ErrorInfo {
    ErrorInfo {
        status,
        kind: ErrorKind::from_status(status),
        message: String::new(),
        code: None,
        param: None,
    }
}
impl StreamDecoder {
    pub fn new() -> Self {
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

pub fn encode_response(_resp: &ChatResponse, _opts: &EncodeOptions) -> Vec<u8> {
    Vec::new()
}
pub struct StreamEncoder;
impl StreamEncoder {
    pub fn new(_opts: EncodeOptions) -> Self {
        StreamEncoder
    }
}
impl StreamEncode for StreamEncoder {
    fn event(&mut self, _ev: &StreamEvent, _out: &mut Vec<u8>) {}
    fn end(&mut self, _out: &mut Vec<u8>) {}
}
pub fn encode_error(_err: &ErrorInfo) -> Vec<u8> {
    Vec::new()
}
