//! Shorthands for IR values in the codec tests, so that a test shows what its case sets and not
//! the fields every case leaves at `None` or zero.

use super::ir::{Part, StopReason, StreamEvent, TextBlock};
use crate::usage::Usage;

/// A text part without a cache marker.
pub fn text(t: &str) -> Part {
    Part::Text(TextBlock {
        text: t.to_owned(),
        cache_control: None,
    })
}

/// A thinking part, signed or not.
pub fn thinking(t: &str, signature: Option<&str>) -> Part {
    Part::Thinking {
        text: t.to_owned(),
        signature: signature.map(str::to_owned),
    }
}

/// An unsigned tool call.
pub fn tool_call(id: &str, name: &str, arguments: &str) -> Part {
    Part::ToolCall {
        id: id.to_owned(),
        name: name.to_owned(),
        arguments: arguments.to_owned(),
        signature: None,
    }
}

/// A stream's start with nothing counted yet.
pub fn start(id: &str, model: &str) -> StreamEvent {
    StreamEvent::Start {
        id: id.to_owned(),
        model: model.to_owned(),
        usage: Usage::default(),
    }
}

/// An unsigned tool call's start.
pub fn tool_start(index: u32, id: &str, name: &str) -> StreamEvent {
    StreamEvent::ToolCallStart {
        index,
        id: id.to_owned(),
        name: name.to_owned(),
        signature: None,
    }
}

/// A fragment of tool call `index`'s arguments.
pub fn args(index: u32, fragment: &str) -> StreamEvent {
    StreamEvent::ToolArgsDelta {
        index,
        fragment: fragment.to_owned(),
    }
}

/// The end of a stream that stopped on no stop sequence.
pub fn finish(reason: StopReason, usage: Usage) -> StreamEvent {
    StreamEvent::Finish {
        reason,
        stop_sequence: None,
        usage,
    }
}
