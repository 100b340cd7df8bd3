"""Drives the gateway with the official `anthropic` SDK; the answer is what the SDK accumulated."""

import anthropic

from _job import PARALLEL_CALLS, QUESTION, emit, error_result, read_job
from _job import TOOLS as TOOL_SPECS

TOOLS = [{"name": name, "description": desc, "input_schema": schema} for name, desc, schema in TOOL_SPECS]
MAX_TOKENS = 1024


def message_result(msg):
    text = "".join(b.text for b in msg.content if b.type == "text")
    calls = [{"id": b.id, "name": b.name, "args": b.input} for b in msg.content if b.type == "tool_use"]
    u = msg.usage
    return {
        "text": text,
        "finish": msg.stop_reason,
        "tool_calls": calls,
        "usage": {
            "input": u.input_tokens,
            "output": u.output_tokens,
            "cache_read": u.cache_read_input_tokens,
            "cache_write": u.cache_creation_input_tokens,
        },
        "model": msg.model,
        "block_types": [b.type for b in msg.content],
    }


def main():
    job = read_job()
    client = anthropic.Anthropic(base_url=job["base_url"], api_key="client-key", max_retries=0, timeout=30)
    model = job["model"]
    scenario = job["scenario"]
    user = [{"role": "user", "content": QUESTION}]

    if scenario == "text":
        emit(message_result(client.messages.create(model=model, max_tokens=MAX_TOKENS, messages=user)))
    elif scenario in ("stream", "tools_stream"):
        extra = {"tools": TOOLS} if scenario == "tools_stream" else {}
        kinds = {}
        with client.messages.stream(model=model, max_tokens=MAX_TOKENS, messages=user, **extra) as stream:
            for event in stream:
                kinds[event.type] = kinds.get(event.type, 0) + 1
            final = stream.get_final_message()
        result = message_result(final)
        result["event_types"] = kinds
        emit(result)
    elif scenario == "tools":
        emit(message_result(client.messages.create(model=model, max_tokens=MAX_TOKENS, messages=user, tools=TOOLS)))
    elif scenario == "tool_results":
        messages = user + [
            {
                "role": "assistant",
                "content": [
                    {"type": "tool_use", "id": c["id"], "name": c["name"], "input": c["args"]}
                    for c in PARALLEL_CALLS
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": c["id"], "content": c["result"]}
                    for c in PARALLEL_CALLS
                ],
            },
        ]
        emit(message_result(client.messages.create(model=model, max_tokens=MAX_TOKENS, messages=messages, tools=TOOLS)))
    elif scenario in ("error", "error_stream"):
        try:
            if scenario == "error":
                client.messages.create(model=model, max_tokens=MAX_TOKENS, messages=user)
            else:
                with client.messages.stream(model=model, max_tokens=MAX_TOKENS, messages=user) as stream:
                    stream.get_final_message()
        except anthropic.APIStatusError as e:
            emit(error_result(e, e.status_code))
            return
        raise SystemExit("expected an anthropic.APIStatusError, the call succeeded")
    else:
        raise SystemExit(f"unknown scenario {scenario!r}")


if __name__ == "__main__":
    main()
