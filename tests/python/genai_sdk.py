"""Drives the gateway with the official `google-genai` SDK; the answer is what the SDK's response
objects say (`.text`, `.function_calls`)."""

import logging

from google import genai
from google.genai import errors, types

from _job import PARALLEL_CALLS, QUESTION, emit, error_result, read_job
from _job import TOOLS as TOOL_SPECS

TOOLS = [
    types.Tool(
        function_declarations=[
            types.FunctionDeclaration(name=name, description=desc, parameters_json_schema=schema)
            for name, desc, schema in TOOL_SPECS
        ]
    )
]


def usage_of(m):
    if m is None:
        return None
    return {
        "input": m.prompt_token_count,
        "output": m.candidates_token_count,
        "thoughts": m.thoughts_token_count,
        "total": m.total_token_count,
    }


def call_of(fc):
    return {"id": fc.id, "name": fc.name, "args": dict(fc.args or {})}


def finish_of(resp):
    cands = resp.candidates or []
    if cands and cands[0].finish_reason is not None:
        return cands[0].finish_reason.value
    return None


def main():
    job = read_job()
    # `.text` on an answer with function calls logs a warning; expected here.
    logging.getLogger("google_genai.types").setLevel(logging.ERROR)
    client = genai.Client(
        api_key="client-key",
        http_options=types.HttpOptions(base_url=job["base_url"], timeout=30_000),
    )
    model = job["model"]
    scenario = job["scenario"]
    tools_config = types.GenerateContentConfig(tools=TOOLS)

    if scenario in ("text", "tools"):
        config = tools_config if scenario == "tools" else None
        resp = client.models.generate_content(model=model, contents=QUESTION, config=config)
        emit(
            {
                # `.text` joins the text parts (None when there are none).
                "text": resp.text,
                "finish": finish_of(resp),
                "tool_calls": [call_of(fc) for fc in (resp.function_calls or [])],
                "usage": usage_of(resp.usage_metadata),
                "model": resp.model_version,
            }
        )
    elif scenario in ("stream", "tools_stream"):
        config = tools_config if scenario == "tools_stream" else None
        text, calls, finish, usage, chunks = "", [], None, None, 0
        for chunk in client.models.generate_content_stream(model=model, contents=QUESTION, config=config):
            chunks += 1
            calls.extend(call_of(fc) for fc in (chunk.function_calls or []))
            text += chunk.text or ""
            finish = finish_of(chunk) or finish
            usage = usage_of(chunk.usage_metadata) or usage
        emit({"text": text, "finish": finish, "tool_calls": calls, "usage": usage, "chunks": chunks})
    elif scenario == "tool_results":
        contents = [
            types.Content(role="user", parts=[types.Part.from_text(text=QUESTION)]),
            types.Content(
                role="model",
                parts=[types.Part.from_function_call(name=c["name"], args=c["args"]) for c in PARALLEL_CALLS],
            ),
            types.Content(
                role="user",
                parts=[
                    types.Part.from_function_response(name=c["name"], response={"result": c["result"]})
                    for c in PARALLEL_CALLS
                ],
            ),
        ]
        resp = client.models.generate_content(model=model, contents=contents, config=tools_config)
        emit({"text": resp.text, "finish": finish_of(resp), "usage": usage_of(resp.usage_metadata)})
    elif scenario in ("error", "error_stream"):
        try:
            if scenario == "error":
                client.models.generate_content(model=model, contents=QUESTION)
            else:
                for _ in client.models.generate_content_stream(model=model, contents=QUESTION):
                    pass
        except errors.APIError as e:
            result = error_result(e, e.code)
            result["error_status"] = e.status
            emit(result)
            return
        raise SystemExit("expected a google.genai.errors.APIError, the call succeeded")
    else:
        raise SystemExit(f"unknown scenario {scenario!r}")


if __name__ == "__main__":
    main()
