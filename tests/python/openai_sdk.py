"""Drives the gateway with the official `openai` SDK; the answer is what the SDK accumulated."""

import json

import openai

from _job import PARALLEL_CALLS, QUESTION, emit, error_result, read_job
from _job import TOOLS as TOOL_SPECS

TOOLS = [
    {
        "type": "function",
        # The SDK's stream helper parses arguments only for strict tools.
        "function": {"name": name, "description": desc, "parameters": schema, "strict": True},
    }
    for name, desc, schema in TOOL_SPECS
]


def usage_of(u):
    if u is None:
        return None
    return {"input": u.prompt_tokens, "output": u.completion_tokens, "total": u.total_tokens}


def message_result(completion, tool_args):
    choice = completion.choices[0]
    calls = [
        {"id": c.id, "name": c.function.name, "args": tool_args(c)}
        for c in (choice.message.tool_calls or [])
    ]
    return {
        "text": choice.message.content,
        "finish": choice.finish_reason,
        "tool_calls": calls,
        "usage": usage_of(completion.usage),
        "model": completion.model,
    }


def main():
    job = read_job()
    client = openai.OpenAI(base_url=job["base_url"], api_key="client-key", max_retries=0, timeout=30)
    model = job["model"]
    scenario = job["scenario"]
    user = [{"role": "user", "content": QUESTION}]

    if scenario == "text":
        out = client.chat.completions.create(model=model, messages=user)
        emit(message_result(out, lambda c: json.loads(c.function.arguments)))
    elif scenario in ("stream", "tools_stream"):
        extra = {"tools": TOOLS} if scenario == "tools_stream" else {}
        kinds = {}
        with client.chat.completions.stream(
            model=model, messages=user, stream_options={"include_usage": True}, **extra
        ) as stream:
            for event in stream:
                kinds[event.type] = kinds.get(event.type, 0) + 1
            final = stream.get_final_completion()
        result = message_result(final, lambda c: c.function.parsed_arguments)
        result["event_types"] = kinds
        emit(result)
    elif scenario == "tools":
        out = client.chat.completions.create(model=model, messages=user, tools=TOOLS)
        emit(message_result(out, lambda c: json.loads(c.function.arguments)))
    elif scenario == "tool_results":
        messages = user + [
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": c["id"],
                        "type": "function",
                        "function": {"name": c["name"], "arguments": json.dumps(c["args"])},
                    }
                    for c in PARALLEL_CALLS
                ],
            }
        ] + [{"role": "tool", "tool_call_id": c["id"], "content": c["result"]} for c in PARALLEL_CALLS]
        out = client.chat.completions.create(model=model, messages=messages, tools=TOOLS)
        emit(message_result(out, lambda c: json.loads(c.function.arguments)))
    elif scenario in ("error", "error_stream"):
        try:
            if scenario == "error":
                client.chat.completions.create(model=model, messages=user)
            else:
                with client.chat.completions.stream(model=model, messages=user) as stream:
                    for _ in stream:
                        pass
        except openai.APIStatusError as e:
            emit(error_result(e, e.status_code))
            return
        raise SystemExit("expected an openai.APIStatusError, the call succeeded")
    else:
        raise SystemExit(f"unknown scenario {scenario!r}")


if __name__ == "__main__":
    main()
