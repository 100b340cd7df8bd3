//! Protocol translation between dialects, through one internal model (`ir`).
//!
//! Each dialect module decodes its wire format into `ir` types and encodes `ir` types back:
//! requests, non-stream responses, streams (as `StreamDecode` / `StreamEncode` state machines
//! that emit output as soon as input arrives) and errors. Same-dialect traffic never comes here:
//! it is passed through byte for byte by `proxy`.

pub mod anthropic;
pub mod bedrock;
pub mod eventstream;
pub mod gemini;
pub mod ir;
pub mod json;
pub mod json_text;
pub mod openai;

use ir::{
    ChatRequest, ChatResponse, Dialect, EncodeOptions, ErrorInfo, StreamDecode, StreamEncode,
    TranslateError,
};

/// Decodes a client's chat request. `path_model` / `path_stream` are what the URL said
/// (Gemini puts both there).
pub fn decode_request(
    dialect: Dialect,
    body: &[u8],
    path_model: &str,
    path_stream: bool,
) -> Result<ChatRequest, TranslateError> {
    match dialect {
        Dialect::OpenAi => openai::decode_request(body),
        Dialect::Anthropic => anthropic::decode_request(body),
        Dialect::Gemini => gemini::decode_request(body, path_model, path_stream),
        Dialect::Bedrock => Err(TranslateError::unsupported(
            "Bedrock is not a client dialect",
            None,
        )),
    }
}

/// Encodes a request for a provider of `dialect`; `model` is the upstream model name (ignored
/// by dialects that carry it in the URL).
pub fn encode_request(
    dialect: Dialect,
    req: &ChatRequest,
    model: &str,
) -> Result<Vec<u8>, TranslateError> {
    match dialect {
        Dialect::OpenAi => openai::encode_request(req, model),
        Dialect::Anthropic => anthropic::encode_request(req, model),
        Dialect::Gemini => gemini::encode_request(req),
        Dialect::Bedrock => bedrock::encode_request(req),
    }
}

pub fn decode_response(dialect: Dialect, body: &[u8]) -> Result<ChatResponse, TranslateError> {
    match dialect {
        Dialect::OpenAi => openai::decode_response(body),
        Dialect::Anthropic => anthropic::decode_response(body),
        Dialect::Gemini => gemini::decode_response(body),
        Dialect::Bedrock => bedrock::decode_response(body),
    }
}

/// Encodes a response for a client of `dialect` (Bedrock is never a client dialect; it gets
/// OpenAI's shape should it ever be asked).
pub fn encode_response(dialect: Dialect, resp: &ChatResponse, opts: &EncodeOptions) -> Vec<u8> {
    match dialect {
        Dialect::OpenAi | Dialect::Bedrock => openai::encode_response(resp, opts),
        Dialect::Anthropic => anthropic::encode_response(resp, opts),
        Dialect::Gemini => gemini::encode_response(resp, opts),
    }
}

/// A stream decoder for a provider of `dialect`; `model` names the stream where the dialect
/// doesn't (Bedrock).
pub fn stream_decoder(dialect: Dialect, model: &str) -> Box<dyn StreamDecode> {
    match dialect {
        Dialect::OpenAi => Box::new(openai::StreamDecoder::new()),
        Dialect::Anthropic => Box::new(anthropic::StreamDecoder::new()),
        Dialect::Gemini => Box::new(gemini::StreamDecoder::new()),
        Dialect::Bedrock => Box::new(bedrock::StreamDecoder::new(model)),
    }
}

pub fn stream_encoder(dialect: Dialect, opts: EncodeOptions) -> Box<dyn StreamEncode> {
    match dialect {
        Dialect::OpenAi | Dialect::Bedrock => Box::new(openai::StreamEncoder::new(opts)),
        Dialect::Anthropic => Box::new(anthropic::StreamEncoder::new(opts)),
        Dialect::Gemini => Box::new(gemini::StreamEncoder::new(&opts)),
    }
}

/// Reads a provider's error body. `error_type` is Bedrock's `x-amzn-errortype` header.
pub fn decode_error(
    dialect: Dialect,
    status: u16,
    error_type: Option<&str>,
    body: &[u8],
) -> ErrorInfo {
    match dialect {
        Dialect::OpenAi => openai::decode_error(status, body),
        Dialect::Anthropic => anthropic::decode_error(status, body),
        Dialect::Gemini => gemini::decode_error(status, body),
        Dialect::Bedrock => bedrock::decode_error(status, error_type, body),
    }
}

/// An error body in a client's dialect.
pub fn encode_error(dialect: Dialect, err: &ErrorInfo) -> Vec<u8> {
    match dialect {
        Dialect::OpenAi | Dialect::Bedrock => openai::encode_error(err),
        Dialect::Anthropic => anthropic::encode_error(err),
        Dialect::Gemini => gemini::encode_error(err),
    }
}

/// A complete answer as the stream events that would have produced it (for upstreams that
/// answered a stream request with a whole body, and for the mock).
pub fn response_to_events(resp: &ir::ChatResponse) -> Vec<ir::StreamEvent> {
    use ir::{Part, StreamEvent as E};
    let mut out = vec![E::Start {
        id: resp.id.clone(),
        model: resp.model.clone(),
        usage: crate::usage::Usage::default(),
    }];
    let mut tool = 0u32;
    for part in &resp.content {
        match part {
            Part::Text(t) if !t.text.is_empty() => out.push(E::TextDelta(t.text.clone())),
            Part::Thinking { text, signature } => {
                out.push(E::ThinkingDelta(text.clone()));
                if let Some(sig) = signature {
                    out.push(E::ThinkingSignature(sig.clone()));
                }
            }
            Part::RedactedThinking { data } => out.push(E::RedactedThinking(data.clone())),
            Part::Refusal(r) => out.push(E::RefusalDelta(r.clone())),
            Part::ToolCall {
                id,
                name,
                arguments,
                signature,
            } => {
                out.push(E::ToolCallStart {
                    index: tool,
                    id: id.clone(),
                    name: name.clone(),
                    signature: signature.clone(),
                });
                if !arguments.is_empty() {
                    out.push(E::ToolArgsDelta {
                        index: tool,
                        fragment: arguments.clone(),
                    });
                }
                tool += 1;
            }
            _ => {}
        }
    }
    out.push(E::Finish {
        reason: resp.stop_reason,
        stop_sequence: resp.stop_sequence.clone(),
        usage: resp.usage,
    });
    out
}

/// One terminal error event in a client's stream dialect, as its stream encoder writes it
/// (for pass-through streams that fail part-way; translated streams get it from their encoder).
pub fn stream_error_event(dialect: Dialect, err: &ErrorInfo, out: &mut Vec<u8>) {
    let mut encoder = stream_encoder(dialect, EncodeOptions::default());
    encoder.event(&ir::StreamEvent::Error(err.clone()), out);
}

#[cfg(test)]
mod golden;
#[cfg(test)]
mod roundtrip_tests;
#[cfg(test)]
mod test_ir;
