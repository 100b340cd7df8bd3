//! Mirror → IR: the inputs of encode cases.

use super::*;
use crate::translate::ir;
use crate::usage::Usage;

impl From<ChatRequest> for ir::ChatRequest {
    fn from(r: ChatRequest) -> Self {
        ir::ChatRequest {
            model: r.model,
            system: r.system.into_iter().map(Into::into).collect(),
            messages: r.messages.into_iter().map(Into::into).collect(),
            tools: r.tools.into_iter().map(Into::into).collect(),
            tool_choice: r.tool_choice.map(Into::into),
            parallel_tool_calls: r.parallel_tool_calls,
            max_tokens: r.max_tokens,
            temperature: r.temperature,
            top_p: r.top_p,
            top_k: r.top_k,
            stop: r.stop,
            stream: r.stream,
            stream_usage: r.stream_usage,
            response_format: r.response_format.map(Into::into),
            reasoning: r.reasoning.map(Into::into),
            user: r.user,
            seed: r.seed,
            presence_penalty: r.presence_penalty,
            frequency_penalty: r.frequency_penalty,
            n: r.n,
        }
    }
}

impl From<TextBlock> for ir::TextBlock {
    fn from(b: TextBlock) -> Self {
        ir::TextBlock {
            text: b.text,
            cache_control: b.cache_control,
        }
    }
}

impl From<Message> for ir::Message {
    fn from(m: Message) -> Self {
        ir::Message {
            role: match m.role {
                Role::User => ir::Role::User,
                Role::Assistant => ir::Role::Assistant,
            },
            content: m.content.into_iter().map(Into::into).collect(),
        }
    }
}

impl From<Source> for ir::ImageSource {
    fn from(s: Source) -> Self {
        match s {
            Source::Base64 { media_type, data } => ir::ImageSource::Base64 { media_type, data },
            Source::Url { url } => ir::ImageSource::Url { url },
        }
    }
}

impl From<Part> for ir::Part {
    fn from(p: Part) -> Self {
        match p {
            Part::Text {
                text,
                cache_control,
            } => ir::Part::Text(ir::TextBlock {
                text,
                cache_control,
            }),
            Part::Image { source } => ir::Part::Image(source.into()),
            Part::Document { source, title } => ir::Part::Document {
                source: source.into(),
                title,
            },
            Part::ToolCall {
                id,
                name,
                arguments,
                signature,
            } => ir::Part::ToolCall {
                id,
                name,
                arguments,
                signature,
            },
            Part::ToolResult {
                id,
                name,
                content,
                is_error,
            } => ir::Part::ToolResult {
                id,
                name,
                content: content.into_iter().map(Into::into).collect(),
                is_error,
            },
            Part::Thinking { text, signature } => ir::Part::Thinking { text, signature },
            Part::RedactedThinking { data } => ir::Part::RedactedThinking { data },
            Part::Refusal { text } => ir::Part::Refusal(text),
        }
    }
}

impl From<Tool> for ir::Tool {
    fn from(t: Tool) -> Self {
        ir::Tool {
            name: t.name,
            description: t.description,
            parameters: t.parameters,
            strict: t.strict,
        }
    }
}

impl From<ToolChoice> for ir::ToolChoice {
    fn from(c: ToolChoice) -> Self {
        match c {
            ToolChoice::Auto => ir::ToolChoice::Auto,
            ToolChoice::Required => ir::ToolChoice::Required,
            ToolChoice::None => ir::ToolChoice::None,
            ToolChoice::Tool(name) => ir::ToolChoice::Tool(name),
        }
    }
}

impl From<ResponseFormat> for ir::ResponseFormat {
    fn from(f: ResponseFormat) -> Self {
        match f {
            ResponseFormat::Text => ir::ResponseFormat::Text,
            ResponseFormat::JsonObject => ir::ResponseFormat::JsonObject,
            ResponseFormat::JsonSchema {
                name,
                schema,
                strict,
            } => ir::ResponseFormat::JsonSchema {
                name,
                schema,
                strict,
            },
        }
    }
}

impl From<Reasoning> for ir::Reasoning {
    fn from(r: Reasoning) -> Self {
        ir::Reasoning {
            effort: r.effort,
            budget_tokens: r.budget_tokens,
            enabled: r.enabled,
        }
    }
}

impl From<StopReason> for ir::StopReason {
    fn from(r: StopReason) -> Self {
        match r {
            StopReason::EndTurn => ir::StopReason::EndTurn,
            StopReason::MaxTokens => ir::StopReason::MaxTokens,
            StopReason::StopSequence => ir::StopReason::StopSequence,
            StopReason::ToolUse => ir::StopReason::ToolUse,
            StopReason::ContentFilter => ir::StopReason::ContentFilter,
            StopReason::PauseTurn => ir::StopReason::PauseTurn,
            StopReason::Other => ir::StopReason::Other,
        }
    }
}

impl From<UsageJ> for Usage {
    fn from(u: UsageJ) -> Self {
        Usage {
            input: u.input,
            output: u.output,
            cache_read: u.cache_read,
            cache_write: u.cache_write,
            reasoning: u.reasoning,
            estimated: u.estimated,
        }
    }
}

impl From<ChatResponse> for ir::ChatResponse {
    fn from(r: ChatResponse) -> Self {
        ir::ChatResponse {
            id: r.id,
            model: r.model,
            content: r.content.into_iter().map(Into::into).collect(),
            stop_reason: r.stop_reason.into(),
            stop_sequence: r.stop_sequence,
            usage: r.usage.into(),
        }
    }
}

impl From<StreamEvent> for ir::StreamEvent {
    fn from(e: StreamEvent) -> Self {
        use ir::StreamEvent as E;
        map_stream_event!(e, StreamEvent => E)
    }
}

impl From<ErrorKind> for ir::ErrorKind {
    fn from(k: ErrorKind) -> Self {
        use ir::ErrorKind as K;
        match k {
            ErrorKind::InvalidRequest => K::InvalidRequest,
            ErrorKind::Authentication => K::Authentication,
            ErrorKind::Permission => K::Permission,
            ErrorKind::NotFound => K::NotFound,
            ErrorKind::RequestTooLarge => K::RequestTooLarge,
            ErrorKind::RateLimit => K::RateLimit,
            ErrorKind::Billing => K::Billing,
            ErrorKind::Overloaded => K::Overloaded,
            ErrorKind::Timeout => K::Timeout,
            ErrorKind::Server => K::Server,
        }
    }
}

impl From<ErrorInfo> for ir::ErrorInfo {
    fn from(e: ErrorInfo) -> Self {
        ir::ErrorInfo {
            status: e.status,
            kind: e.kind.into(),
            message: e.message,
            code: e.code,
            param: e.param,
        }
    }
}
