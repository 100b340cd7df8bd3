//! Which API operation a request is for, whatever dialect the client spoke; selects the
//! upstream path.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// A chat turn: OpenAI chat completions, Anthropic messages, Gemini generateContent.
    ChatCompletions,
    Completions,
    Embeddings,
    /// OpenAI Responses API (OpenAI-dialect providers only).
    Responses,
    /// Anthropic `count_tokens`.
    CountTokens,
}

impl Endpoint {
    /// Path of the OpenAI-dialect endpoint, appended to an OpenAI base URL.
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::ChatCompletions => "/chat/completions",
            Endpoint::Completions => "/completions",
            Endpoint::Embeddings => "/embeddings",
            Endpoint::Responses => "/responses",
            Endpoint::CountTokens => "/messages/count_tokens",
        }
    }

    /// Label for metrics and logs.
    pub fn label(self) -> &'static str {
        match self {
            Endpoint::ChatCompletions => "chat",
            Endpoint::Completions => "completions",
            Endpoint::Embeddings => "embeddings",
            Endpoint::Responses => "responses",
            Endpoint::CountTokens => "count_tokens",
        }
    }
}
