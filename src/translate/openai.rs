//! openai dialect codec (being written).
