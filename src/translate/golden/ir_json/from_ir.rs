//! IR → mirror: the outputs of decode cases.

use super::*;
use crate::translate::ir;
use crate::usage::Usage;

impl From<&ir::ChatRequest> for ChatRequest {
    fn from(r: &ir::ChatRequest) -> Self {
        ChatRequest {
            model: r.model.clone(),
            system: r.system.iter().map(Into::into).collect(),
            messages: r.messages.iter().map(Into::into).collect(),
            tools: r.tools.iter().map(Into::into).collect(),
            tool_choice: r.tool_choice.as_ref().map(Into::into),
            parallel_tool_calls: r.parallel_tool_calls,
            max_tokens: r.max_tokens,
            temperature: r.temperature,
            top_p: r.top_p,
            top_k: r.top_k,
            stop: r.stop.clone(),
            stream: r.stream,
            stream_usage: r.stream_usage,
            response_format: r.response_format.as_ref().map(Into::into),
            reasoning: r.reasoning.as_ref().map(Into::into),
            user: r.user.clone(),
            seed: r.seed,
            presence_penalty: r.presence_penalty,
            frequency_penalty: r.frequency_penalty,
            n: r.n,
        }
    }
}

impl From<&ir::TextBlock> for TextBlock {
    fn from(b: &ir::TextBlock) -> Self {
        TextBlock {
            text: b.text.clone(),
            cache_control: b.cache_control.clone(),
        }
    }
}

impl From<&ir::Message> for Message {
    fn from(m: &ir::Message) -> Self {
        Message {
            role: match m.role {
                ir::Role::User => Role::User,
                ir::Role::Assistant => Role::Assistant,
            },
            content: m.content.iter().map(Into::into).collect(),
        }
    }
}

impl From<&ir::ImageSource> for Source {
    fn from(s: &ir::ImageSource) -> Self {
        match s {
            ir::ImageSource::Base64 { media_type, data } => Source::Base64 {
                media_type: media_type.clone(),
                data: data.clone(),
            },
            ir::ImageSource::Url { url } => Source::Url { url: url.clone() },
        }
    }
}

impl From<&ir::Part> for Part {
    fn from(p: &ir::Part) -> Self {
        match p.clone() {
            ir::Part::Text(b) => Part::Text {
                text: b.text,
                cache_control: b.cache_control,
            },
            ir::Part::Image(source) => Part::Image {
                source: (&source).into(),
            },
            ir::Part::Document { source, title } => Part::Document {
                source: (&source).into(),
                title,
            },
            ir::Part::ToolCall {
                id,
                name,
                arguments,
                signature,
            } => Part::ToolCall {
                id,
                name,
                arguments,
                signature,
            },
            ir::Part::ToolResult {
                id,
                name,
                content,
                is_error,
            } => Part::ToolResult {
                id,
                name,
                content: content.iter().map(Into::into).collect(),
                is_error,
            },
            ir::Part::Thinking { text, signature } => Part::Thinking { text, signature },
            ir::Part::RedactedThinking { data } => Part::RedactedThinking { data },
            ir::Part::Refusal(text) => Part::Refusal { text },
        }
    }
}

impl From<&ir::Tool> for Tool {
    fn from(t: &ir::Tool) -> Self {
        Tool {
            name: t.name.clone(),
            description: t.description.clone(),
            parameters: t.parameters.clone(),
            strict: t.strict,
        }
    }
}

impl From<&ir::ToolChoice> for ToolChoice {
    fn from(c: &ir::ToolChoice) -> Self {
        match c {
            ir::ToolChoice::Auto => ToolChoice::Auto,
            ir::ToolChoice::Required => ToolChoice::Required,
            ir::ToolChoice::None => ToolChoice::None,
            ir::ToolChoice::Tool(name) => ToolChoice::Tool(name.clone()),
        }
    }
}

impl From<&ir::ResponseFormat> for ResponseFormat {
    fn from(f: &ir::ResponseFormat) -> Self {
        match f.clone() {
            ir::ResponseFormat::Text => ResponseFormat::Text,
            ir::ResponseFormat::JsonObject => ResponseFormat::JsonObject,
            ir::ResponseFormat::JsonSchema {
                name,
                schema,
                strict,
            } => ResponseFormat::JsonSchema {
                name,
                schema,
                strict,
            },
        }
    }
}

impl From<&ir::Reasoning> for Reasoning {
    fn from(r: &ir::Reasoning) -> Self {
        Reasoning {
            effort: r.effort.clone(),
            budget_tokens: r.budget_tokens,
            enabled: r.enabled,
        }
    }
}

impl From<ir::StopReason> for StopReason {
    fn from(r: ir::StopReason) -> Self {
        match r {
            ir::StopReason::EndTurn => StopReason::EndTurn,
            ir::StopReason::MaxTokens => StopReason::MaxTokens,
            ir::StopReason::StopSequence => StopReason::StopSequence,
            ir::StopReason::ToolUse => StopReason::ToolUse,
            ir::StopReason::ContentFilter => StopReason::ContentFilter,
            ir::StopReason::PauseTurn => StopReason::PauseTurn,
            ir::StopReason::Other => StopReason::Other,
        }
    }
}

impl From<Usage> for UsageJ {
    fn from(u: Usage) -> Self {
        UsageJ {
            input: u.input,
            output: u.output,
            cache_read: u.cache_read,
            cache_write: u.cache_write,
            reasoning: u.reasoning,
            estimated: u.estimated,
        }
    }
}

impl From<&ir::ChatResponse> for ChatResponse {
    fn from(r: &ir::ChatResponse) -> Self {
        ChatResponse {
            id: r.id.clone(),
            model: r.model.clone(),
            content: r.content.iter().map(Into::into).collect(),
            stop_reason: r.stop_reason.into(),
            stop_sequence: r.stop_sequence.clone(),
            usage: r.usage.into(),
        }
    }
}

impl From<&ir::StreamEvent> for StreamEvent {
    fn from(e: &ir::StreamEvent) -> Self {
        use ir::StreamEvent as E;
        map_stream_event!(e.clone(), E => StreamEvent)
    }
}

impl From<ir::ErrorKind> for ErrorKind {
    fn from(k: ir::ErrorKind) -> Self {
        use ir::ErrorKind as K;
        match k {
            K::InvalidRequest => ErrorKind::InvalidRequest,
            K::Authentication => ErrorKind::Authentication,
            K::Permission => ErrorKind::Permission,
            K::NotFound => ErrorKind::NotFound,
            K::RequestTooLarge => ErrorKind::RequestTooLarge,
            K::RateLimit => ErrorKind::RateLimit,
            K::Billing => ErrorKind::Billing,
            K::Overloaded => ErrorKind::Overloaded,
            K::Timeout => ErrorKind::Timeout,
            K::Server => ErrorKind::Server,
        }
    }
}

impl From<&ir::ErrorInfo> for ErrorInfo {
    fn from(e: &ir::ErrorInfo) -> Self {
        ErrorInfo {
            status: e.status,
            kind: e.kind.into(),
            message: e.message.clone(),
            code: e.code.clone(),
            param: e.param.clone(),
        }
    }
}

impl From<ir::ErrorInfo> for ErrorInfo {
    fn from(e: ir::ErrorInfo) -> Self {
        (&e).into()
    }
}

impl From<&ir::TranslateError> for TranslateError {
    fn from(e: &ir::TranslateError) -> Self {
        match e.clone() {
            ir::TranslateError::Unsupported { message, param } => {
                TranslateError::Unsupported { message, param }
            }
            ir::TranslateError::Json(m) => TranslateError::Json(m),
            ir::TranslateError::Protocol(m) => TranslateError::Protocol(m),
        }
    }
}
