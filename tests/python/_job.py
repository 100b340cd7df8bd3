"""Shared plumbing for the SDK scripts: read the job, print one JSON result.

Each script is run by tests/sdk_python.rs as `python SCRIPT` with a JSON job on stdin:
{"base_url": ..., "scenario": ..., "model": ...}. It prints exactly one JSON object on stdout.
An SDK exception that a scenario expects is reported in the JSON (class, module, status);
anything else propagates, so the process fails with a traceback the Rust test shows.
"""

import json
import sys


def _schema(*params):
    """A strict JSON Schema object of string parameters (accepted by all three APIs)."""
    return {
        "type": "object",
        "properties": {p: {"type": "string"} for p in params},
        "required": list(params),
        "additionalProperties": False,
    }


# Every scenario declares the same tools: those the recorded upstream answers call
# (tests/fixtures), so each SDK finds the tool its answer names.
TOOLS = [
    ("get_weather", "Current weather of a city", _schema("location")),
    ("weather", "Current weather of a city", _schema("location")),
    ("get_capital", "Capital of a country", _schema("country")),
    ("get_country", "The user's country", _schema()),
    ("retrieve_entity_info", "Facts about a person", _schema("name")),
]

# Two parallel calls of one assistant turn and their results, for the `tool_results` scenario.
PARALLEL_CALLS = [
    {"id": "call_paris_1", "name": "get_weather", "args": {"location": "Paris"}, "result": "sunny, 24C"},
    {"id": "call_london_2", "name": "get_weather", "args": {"location": "London"}, "result": "rainy, 12C"},
]

QUESTION = "What is the weather in Paris and in London?"


def read_job():
    job = json.load(sys.stdin)
    for key in ("base_url", "scenario", "model"):
        if not isinstance(job.get(key), str):
            raise SystemExit(f"job lacks a string {key!r}: {job!r}")
    return job


def emit(result):
    json.dump(result, sys.stdout, sort_keys=True, default=str)
    sys.stdout.write("\n")
    sys.stdout.flush()


def error_result(exc, status):
    """What an expected SDK exception looks like to the Rust side."""
    return {
        "error_class": type(exc).__name__,
        "error_module": type(exc).__module__,
        "status": status,
        "message": str(exc),
        "mro": [c.__name__ for c in type(exc).__mro__],
    }
