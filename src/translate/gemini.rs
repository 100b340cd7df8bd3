//! gemini dialect codec (being written).
