"""Governance refusals as the official SDKs see them.

A JSON job on stdin: {"openai_base_url", "anthropic_base_url", "calls": [{"sdk": "openai" |
"anthropic", "key", "model"}]}. Each call is one request with `max_retries=0`; the result is
one JSON list on stdout, per call either {"ok": true} or the SDK exception's class, module,
status and message.
"""

import json
import sys

import anthropic
import openai


def call_openai(base_url, key, model):
    client = openai.OpenAI(base_url=base_url, api_key=key, max_retries=0, timeout=30)
    client.chat.completions.create(
        model=model, max_tokens=10, messages=[{"role": "user", "content": "Say hello"}]
    )


def call_anthropic(base_url, key, model):
    client = anthropic.Anthropic(base_url=base_url, api_key=key, max_retries=0, timeout=30)
    client.messages.create(
        model=model, max_tokens=10, messages=[{"role": "user", "content": "Say hello"}]
    )


def main():
    job = json.load(sys.stdin)
    out = []
    for c in job["calls"]:
        try:
            if c["sdk"] == "openai":
                call_openai(job["openai_base_url"], c["key"], c["model"])
            else:
                call_anthropic(job["anthropic_base_url"], c["key"], c["model"])
            out.append({"ok": True})
        except (openai.APIStatusError, anthropic.APIStatusError) as e:
            out.append(
                {
                    "error_class": type(e).__name__,
                    "error_module": type(e).__module__.split(".")[0],
                    "status": e.status_code,
                    "message": str(e),
                }
            )
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
