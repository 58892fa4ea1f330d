#!/usr/bin/env python3
"""A stand-in for llama.cpp's `llama-server`, so that tests of the process around the model (tests/integration/
test_signals.py) run in seconds: the real server takes minutes to load and answer on 2 cores, and its answers are not
what those tests are about. crewdesk starts it exactly as it starts llama.cpp (crewdesk/llm/local.py, pointed here by
CREWDESK_LOCAL_SERVER_BIN), with the same arguments, which it reads as llama-server does: it serves --alias on
--host:--port, and exits 1 when --model names no file. Standard library only.

  GET  /health, /v1/models         llama-server's health check, and the model list local.py polls for the alias
  POST /v1/chat/completions        OpenAI-compatible; a `json_schema` response format is answered with a document that
                                   fits the schema, as llama.cpp's grammar would force

Its answers: a ReAct step schema (crewdesk/llm/react.py) gets the final answer, built from the output model's schema
with plausible values (a billing triage, a resolution); with FAKE_LLAMA_TOOL=NAME, an agent offered that tool calls it
first when the conversation names an order (#W1234567, passed as `order_id`; other arguments from the tool's schema), then
answers.

Slow on purpose: from the FAKE_LLAMA_STALL_FROM-th chat request on (1 = all), each request waits FAKE_LLAMA_STALL_SECONDS
(default 600) before answering. FAKE_LLAMA_IGNORE_SIGTERM=1 makes it ignore SIGTERM (a server that will not stop).
FAKE_LLAMA_STATE names a directory where it writes `pid` and appends one line per event to `events`: `started`,
`request N`, `stalling N`, `answered N`, `SIGTERM ignored`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ORDER_ID = re.compile(r"#W\d{7}")

# Plausible values for the fields of crewdesk's output models (Triage, Resolution, Handoff) and tool arguments.
KNOWN: dict[str, Any] = {
    "category": "billing",
    "priority": "normal",
    "language": "en",
    "sentiment": "neutral",
    "summary": "The customer asks us to act on an order.",
    "confidence": 0.9,
    "customer_reply": "Thank you for writing. We have taken care of your request.",
    "internal_note": "Answered by the stand-in model.",
    "needs_human": False,
    "escalation_reason": "",
    "handoff_summary": "The customer needs a person to follow up.",
    "team": "tier2",
    "reason": "no longer needed",
}


class Events:
    def __init__(self, state: Path | None) -> None:
        self.path = state / "events" if state else None
        self.lock = threading.Lock()
        self.requests = 0

    def say(self, line: str) -> None:
        if self.path is None:
            return
        with self.lock, self.path.open("a", encoding="utf-8") as out:
            out.write(line + "\n")

    def next_request(self) -> int:
        with self.lock:
            self.requests += 1
            return self.requests


def fits(value: Any, schema: dict[str, Any]) -> bool:
    if "const" in schema:
        return value == schema["const"]
    if "enum" in schema:
        return value in schema["enum"]
    kind = schema.get("type")
    if kind == "string":
        return isinstance(value, str) and len(value) >= schema.get("minLength", 0) and len(value) <= schema.get("maxLength", 10**9)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind in ("number", "integer"):
        return isinstance(value, int | float) and not isinstance(value, bool) and schema.get("minimum", -(10**9)) <= value <= schema.get("maximum", 10**9)
    return False


def fill(schema: dict[str, Any], known: dict[str, Any], name: str | None = None) -> Any:
    """A document that fits `schema`: a known value where it fits, otherwise the first value the schema allows."""
    if name in known and fits(known[name], schema):
        return known[name]
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return schema["enum"][0]
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return fill(schema[key][0], known, name)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = kind[0]
    if kind == "object":
        return {key: fill(sub, known, key) for key, sub in schema.get("properties", {}).items() if key in schema.get("required", [])}
    if kind == "array":
        return [fill(schema["items"], known)] * int(schema.get("minItems", 0))
    if kind == "string":
        return "x" * int(schema.get("minLength", 0))
    if kind in ("number", "integer"):
        return schema.get("minimum", 0)
    if kind == "boolean":
        return False
    return None


def answer(request: dict[str, Any]) -> str:
    messages = request.get("messages") or []
    text = "\n".join(str(m.get("content") or "") for m in messages)
    found = ORDER_ID.search(text)
    known = {**KNOWN, **({"order_id": found.group(0)} if found else {})}
    schema = ((request.get("response_format") or {}).get("json_schema") or {}).get("schema")
    if schema is None:  # ReAct text mode (API models): a final answer in the resolution's shape
        return "Thought: I now know the final answer\nFinal Answer: " + json.dumps({k: KNOWN[k] for k in ("customer_reply", "internal_note")})
    steps = ((schema.get("properties") or {}).get("step") or {}).get("anyOf")
    if not steps:  # a constrained decision
        return json.dumps(fill(schema, known))
    tools = {alt["properties"]["action"]["const"]: alt for alt in steps if "action" in alt.get("properties", {})}
    final = next(alt for alt in steps if "final_answer" in alt.get("properties", {}))
    wanted = os.environ.get("FAKE_LLAMA_TOOL", "")
    if wanted in tools and found and not any(m.get("role") == "assistant" for m in messages):
        arguments = fill(tools[wanted]["properties"]["action_input"], known)
        return json.dumps({"step": {"thought": f"I will use {wanted}.", "action": wanted, "action_input": arguments}})
    return json.dumps({"step": {"thought": "I now know the final answer.", "final_answer": fill(final["properties"]["final_answer"], known)}})


def handler_for(alias: str, events: Events) -> type[BaseHTTPRequestHandler]:
    stall_from = int(os.environ.get("FAKE_LLAMA_STALL_FROM") or 0)
    stall_seconds = float(os.environ.get("FAKE_LLAMA_STALL_SECONDS") or 600)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def reply(self, status: int, payload: object) -> None:
            data = json.dumps(payload).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client went away (its process was stopped)

        def do_GET(self) -> None:
            path = self.path.rstrip("/")
            if path == "/health":
                self.reply(200, {"status": "ok"})
            elif path in ("/v1/models", "/models"):
                self.reply(200, {"object": "list", "data": [{"id": alias, "object": "model", "owned_by": "llamacpp"}]})
            else:
                self.reply(404, {"error": {"code": 404, "message": "File Not Found", "type": "not_found_error"}})

        def do_POST(self) -> None:
            if not self.path.rstrip("/").endswith("/chat/completions"):
                self.reply(404, {"error": {"code": 404, "message": "File Not Found", "type": "not_found_error"}})
                return
            request = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
            number = events.next_request()
            events.say(f"request {number}")
            if stall_from and number >= stall_from:
                events.say(f"stalling {number}")
                time.sleep(stall_seconds)
            content = answer(request)
            prompt = sum(len(str(m.get("content") or "")) for m in request.get("messages") or []) // 4 + 1
            self.reply(
                200,
                {
                    "id": f"chatcmpl-{number}",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": alias,
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": prompt, "completion_tokens": len(content) // 4 + 1, "total_tokens": prompt + len(content) // 4 + 1},
                },
            )
            events.say(f"answered {number}")

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description="A stand-in for llama.cpp's llama-server (tests only).")
    parser.add_argument("--model", required=True)
    parser.add_argument("--alias", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--ctx-size", type=int, default=4096)
    parser.add_argument("--parallel", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cache-reuse", type=int, default=0)
    args = parser.parse_args()
    if not Path(args.model).is_file():
        print(f"error: failed to load model '{args.model}'", file=sys.stderr)
        sys.exit(1)
    state = Path(os.environ["FAKE_LLAMA_STATE"]) if os.environ.get("FAKE_LLAMA_STATE") else None
    events = Events(state)
    if os.environ.get("FAKE_LLAMA_IGNORE_SIGTERM") == "1":
        signal.signal(signal.SIGTERM, lambda *_: events.say("SIGTERM ignored"))
    server = ThreadingHTTPServer((args.host, args.port), handler_for(args.alias, events))
    server.daemon_threads = True
    if state is not None:
        (state / "pid").write_text(str(os.getpid()))
    events.say("started")
    print(f"fake llama-server: {args.alias} on http://{args.host}:{args.port} ({args.parallel} slots)", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
