//! bedrock dialect codec (being written).
