//! anthropic dialect codec (being written).
