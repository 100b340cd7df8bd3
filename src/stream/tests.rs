#![allow(clippy::unwrap_used)]

use bytes::Bytes;

use super::*;
use crate::translate::ir::ErrorKind;

const WITH_USAGE: &str = concat!(
    "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}],\"usage\":null,\"obfuscation\":\"x\"}\n\n",
    "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}],\"usage\":null}\n\n",
    "data: {\"id\":\"c\",\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":2,\"total_tokens\":9}}\n\n",
    "data: [DONE]\n\n",
);
const WITHOUT_USAGE: &str = concat!(
    "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}],\"obfuscation\":\"x\"}\n\n",
    "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}]}\n\n",
    "data: [DONE]\n\n",
);

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

/// Feeds `input` cut at the given offsets; returns the output and the pipeline.
fn run_cuts(mut p: Pipeline, input: &[u8], cuts: &[usize]) -> (Vec<u8>, Pipeline) {
    let mut out = Vec::new();
    let mut at = 0;
    for &cut in cuts.iter().chain(std::iter::once(&input.len())) {
        if cut > at {
            if let Some(b) = p.push(Bytes::copy_from_slice(&input[at..cut])) {
                out.extend_from_slice(&b);
            }
            at = cut;
        }
    }
    if let Some(b) = p.finish() {
        out.extend_from_slice(&b);
    }
    (out, p)
}

fn run_steps(p: Pipeline, input: &[u8], step: usize) -> (Vec<u8>, Pipeline) {
    let cuts: Vec<usize> = (step..input.len()).step_by(step).collect();
    run_cuts(p, input, &cuts)
}

fn openai(strip: bool) -> Pipeline {
    Pipeline::forward(Tap::openai(strip, 100), None)
}

fn openai_watched(strip: bool) -> Pipeline {
    Pipeline::forward(
        Tap::openai(strip, 100),
        Some(crate::translate::stream_decoder(Dialect::OpenAi, "m")),
    )
}

#[test]
fn pass_through_is_byte_identical_and_tapped() {
    for step in [1, 7, 64, 4096] {
        for p in [openai(false), openai_watched(false)] {
            let (out, p) = run_steps(p, WITH_USAGE.as_bytes(), step);
            assert_eq!(out, WITH_USAGE.as_bytes());
            assert_eq!(p.usage().map(|u| (u.input, u.output)), Some((7, 2)));
        }
    }
}

#[test]
fn strip_mode_restores_the_stream_without_include_usage() {
    for step in [1, 5, 33, 4096] {
        let (out, p) = run_steps(openai(true), WITH_USAGE.as_bytes(), step);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            WITHOUT_USAGE,
            "step {step}"
        );
        assert_eq!(p.usage().map(|u| u.output), Some(2));
    }
}

#[test]
fn strips_usage_null_wherever_it_sits() {
    let input =
        "data: {\"usage\":null, \"id\":\"c\"}\n\ndata: {\"id\":\"c\" , \"usage\": null }\n\n";
    let (out, _) = run_steps(openai(true), input.as_bytes(), 4096);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "data: {\"id\":\"c\"}\n\ndata: {\"id\":\"c\"  }\n\n"
    );
}

#[test]
fn any_framing_gives_the_same_output() {
    // Every single cut point, then many random multi-cut framings (fixed seed).
    let crlf = WITH_USAGE.replace("\n", "\r\n");
    for (input, expected) in [
        (WITH_USAGE.to_string(), WITHOUT_USAGE.to_string()),
        (crlf.clone(), WITHOUT_USAGE.replace("\n", "\r\n")),
    ] {
        let input = input.as_bytes();
        for cut in 0..input.len() {
            assert_eq!(
                run_cuts(openai(true), input, &[cut]).0,
                expected.as_bytes(),
                "cut {cut}"
            );
            assert_eq!(run_cuts(openai(false), input, &[cut]).0, input, "cut {cut}");
            assert_eq!(
                run_cuts(openai_watched(false), input, &[cut]).0,
                input,
                "cut {cut}"
            );
        }
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..500 {
            let mut cuts: Vec<usize> = (0..rng.usize(1..12))
                .map(|_| rng.usize(0..input.len()))
                .collect();
            cuts.sort_unstable();
            assert_eq!(
                run_cuts(openai(true), input, &cuts).0,
                expected.as_bytes(),
                "cuts {cuts:?}"
            );
            assert_eq!(
                run_cuts(openai(false), input, &cuts).0,
                input,
                "cuts {cuts:?}"
            );
        }
    }
}

#[test]
fn usage_only_chunk_with_python_separators_is_stripped() {
    let input = "data: {\"id\": \"c\", \"choices\": [{\"delta\": {\"content\": \"a\"}}], \"usage\": null}\n\ndata: {\"id\": \"c\", \"choices\": [ ], \"usage\": {\"prompt_tokens\": 3, \"completion_tokens\": 1}}\n\ndata: [DONE]\n\n";
    let (out, p) = run_steps(openai(true), input.as_bytes(), 4096);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "data: {\"id\": \"c\", \"choices\": [{\"delta\": {\"content\": \"a\"}}]}\n\ndata: [DONE]\n\n"
    );
    assert_eq!(p.usage().map(|u| u.input), Some(3));
}

#[test]
fn pass_through_forwards_the_same_buffer() {
    for mut p in [openai(false), openai_watched(false)] {
        let chunk = Bytes::from_static(b"data: {}\n\n");
        let out = p.push(chunk.clone()).unwrap();
        assert_eq!(out.as_ptr(), chunk.as_ptr());
    }
}

#[test]
fn usage_is_estimated_when_the_stream_is_cut() {
    let mut p = Pipeline::forward(Tap::openai(false, 400), None);
    p.push(Bytes::from_static(b"data: {\"choices\":[{\"delta\":{\"role\":\"assistant\"}}]}\n\ndata: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\ndata: {\"choices\":[{\"delta\":{\"content\":\"b\"}}]}\n\n"));
    let u = p.usage().unwrap();
    assert_eq!((u.input, u.output, u.estimated), (100, 2, true));
}

#[test]
fn a_fault_mid_event_starts_a_fresh_event_and_ends_the_stream() {
    let mut p = openai(false);
    p.push(Bytes::from_static(b"data: {\"choi"));
    let e = p.fault(Fault::Stall).unwrap();
    assert!(e.starts_with(b"\n\ndata: {\"error\""), "{e:?}");
    assert!(p.ended());
    assert_eq!(p.push(Bytes::from_static(b"ces\":[]}\n\n")), None);
    assert_eq!(p.fault(Fault::TotalTimeout), None, "one error event only");
    assert_eq!(p.finish(), None);
}

#[test]
fn event_streams_are_forwarded_untouched_and_tapped() {
    for (dialect, name) in [
        (
            EventDialect::Anthropic,
            "anthropic-stream-text-tool-use.sse",
        ),
        (EventDialect::Gemini, "gemini-stream-text.sse"),
        (EventDialect::Responses, "openai-responses-stream-text.sse"),
    ] {
        let body = fixture(name);
        for step in [1, 7, 13, 64, body.len()] {
            let (out, p) = run_steps(
                Pipeline::forward(Tap::events(dialect, 100), None),
                &body,
                step,
            );
            assert_eq!(out, body, "{name} step {step}");
            let u = p.usage().unwrap();
            assert!(!u.estimated && u.input > 0 && u.output > 0, "{name}: {u:?}");
        }
    }
}

/// The same fault gives the same error kind and code in every client dialect, passed through
/// or translated.
#[test]
fn one_fault_one_error_in_every_dialect() {
    let anthropic_sse = fixture("anthropic-stream-text-tool-use.sse");
    let head = &anthropic_sse[..anthropic_sse.len() / 3];
    let opts = EncodeOptions::default();
    let decoder = || crate::translate::stream_decoder(Dialect::Anthropic, "m");
    let mut outputs = Vec::new();
    let mut forward = Pipeline::forward(Tap::events(EventDialect::Anthropic, 0), Some(decoder()));
    forward.push(Bytes::copy_from_slice(head));
    outputs.push((Dialect::Anthropic, forward.fault(Fault::Stall).unwrap()));
    let mut forward = openai_watched(false);
    forward.push(Bytes::from_static(
        b"data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}]}\n\n",
    ));
    outputs.push((Dialect::OpenAi, forward.fault(Fault::Stall).unwrap()));
    for client in [Dialect::OpenAi, Dialect::Anthropic, Dialect::Gemini] {
        let mut p = Pipeline::translate(
            Framing::sse(),
            decoder(),
            crate::translate::stream_encoder(client, opts.clone()),
            0,
        );
        p.push(Bytes::copy_from_slice(head));
        outputs.push((client, p.fault(Fault::Stall).unwrap()));
    }
    let info = Fault::Stall.info();
    assert_eq!((info.kind, info.status), (ErrorKind::Timeout, 504));
    for (client, out) in outputs {
        let text = String::from_utf8_lossy(&out);
        let data = text
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix("data: "))
            .unwrap_or_else(|| panic!("{client:?}: no data line in {text}"));
        let got: serde_json::Value = serde_json::from_str(data).unwrap();
        let want: serde_json::Value =
            serde_json::from_slice(&crate::translate::encode_error(client, &info)).unwrap();
        assert_eq!(got["error"], want["error"], "{client:?}: {text}");
    }
}

#[test]
fn an_error_event_before_content_is_the_early_fault() {
    let body = fixture("anthropic-stream-error-overloaded.sse");
    let mut p = Pipeline::forward(
        Tap::events(EventDialect::Anthropic, 0),
        Some(crate::translate::stream_decoder(Dialect::Anthropic, "m")),
    );
    p.push(Bytes::from(body));
    assert!(p.primed());
    match p.take_early_fault() {
        Some(Fault::Upstream(info)) => assert_eq!(info.kind, ErrorKind::Overloaded),
        other => panic!("{other:?}"),
    }
}

#[test]
fn content_counts_only_real_content() {
    let mut p = openai_watched(false);
    p.push(Bytes::from_static(
        b": keep-alive\n\ndata: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n",
    ));
    assert_eq!(p.content(), 0);
    assert!(!p.primed());
    p.push(Bytes::from_static(
        b"data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}]}\n\n",
    ));
    assert_eq!(p.content(), 1);
    assert!(p.primed());
    assert_eq!(p.take_early_fault(), None);
}

#[test]
fn a_bad_event_stream_frame_is_one_error() {
    let mut p = Pipeline::translate(
        Framing::for_content_type(b"application/vnd.amazon.eventstream").unwrap(),
        crate::translate::stream_decoder(Dialect::Bedrock, "m"),
        crate::translate::stream_encoder(Dialect::OpenAi, EncodeOptions::default()),
        0,
    );
    let out = p
        .push(Bytes::from_static(&[
            0, 0, 0, 16, 0, 0, 0, 0, 9, 9, 9, 9, 0, 0, 0, 0,
        ]))
        .unwrap();
    assert!(String::from_utf8_lossy(&out).contains("upstream_bad_response"));
    assert!(p.ended());
    assert!(matches!(p.take_early_fault(), Some(Fault::BadFraming(_))));
}

#[test]
fn trailing_usage_null_is_stripped_only_where_it_is_the_last_top_level_member() {
    for (input, expected) in [
        // The common chunk.
        (
            "data: {\"id\":\"c\",\"usage\":null}\n\n",
            "data: {\"id\":\"c\"}\n\n",
        ),
        // An `event:` line before the data, CRLF endings.
        (
            "event: x\r\ndata: {\"id\":\"c\",\"usage\":null}\r\n\r\n",
            "event: x\r\ndata: {\"id\":\"c\"}\r\n\r\n",
        ),
        // Nested: the member is not the top-level one; only the top-level one goes.
        (
            "data: {\"a\":{\"x\":1,\"usage\":null},\"usage\":null}\n\n",
            "data: {\"a\":{\"x\":1,\"usage\":null}}\n\n",
        ),
        // The stream's last event without its blank line (found at the end, not by the split).
        (
            "data: {\"id\":\"c\",\"usage\":null}\n",
            "data: {\"id\":\"c\"}\n",
        ),
        // A comment after the data line: the full scan strips it all the same.
        (
            "data: {\"id\":\"c\",\"usage\":null}\n: x\n\n",
            "data: {\"id\":\"c\"}\n: x\n\n",
        ),
        // Not a data line at the end: left to the full scan, which leaves a comment alone.
        (
            ": {\"id\":\"c\",\"usage\":null}\n\n",
            ": {\"id\":\"c\",\"usage\":null}\n\n",
        ),
    ] {
        let (out, _) = run_steps(openai(true), input.as_bytes(), 4096);
        assert_eq!(String::from_utf8(out).unwrap(), expected);
    }
}

#[test]
fn an_error_message_then_a_bad_frame_still_sends_the_error() {
    // A Bedrock exception message followed, in the same chunk, by bytes that are no frame.
    let mut body = fixture("bedrock-converse-stream.eventstream.bin");
    let mut p = Pipeline::translate(
        Framing::for_content_type(b"application/vnd.amazon.eventstream").unwrap(),
        crate::translate::stream_decoder(Dialect::Bedrock, "m"),
        crate::translate::stream_encoder(Dialect::OpenAi, EncodeOptions::default()),
        0,
    );
    // The recorded stream's first frame, an exception, then bytes that are no frame.
    let first = u32::from_be_bytes([body[0], body[1], body[2], body[3]]) as usize;
    body.truncate(first);
    body.extend(crate::translate::eventstream::exception_frame(
        "modelStreamErrorException",
        r#"{"message":"model stream failed"}"#,
    ));
    body.extend_from_slice(&[0, 0, 0, 16, 0, 0, 0, 0, 9, 9, 9, 9, 0, 0, 0, 0]);
    let out = p.push(Bytes::from(body)).unwrap();
    let text = String::from_utf8_lossy(&out);
    assert!(text.contains("model stream failed"), "{text}");
    assert!(p.ended());
}
