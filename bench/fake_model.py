"""An OpenAI-compatible chat-completions server that answers as the scripted model does, and fails on cue.

  .venv/bin/python bench/fake_model.py --port 8799 [--plans plans.json] [--latency-ms 0]

POST /v1/chat/completions answers with the ReAct text crewdesk.llm.scripted would produce for the same messages: when a
ticket's text names an order the plans file has a plan for (keyed by order id, e.g. "#W2611340"), a PlanResponder built
from that plan (triage, the specialist's tool calls one per turn, then the final answer, as crews/eval_oracle.py `oracle`
builds it); otherwise default_responder. The server keeps no conversation state: the step is read from the messages
(the number of assistant turns so far), so a ticket retried or resumed on another worker gets the same answers.

POST /control {"mode": "normal" | "429" | "500" | "hang", "retry_after": 5, "hang_seconds": 10} switches what every
request meets from then on: a 429 with Retry-After, a 500, or a hang of hang_seconds (past the client's timeout) before
answering. GET /stats counts requests by what they met. SIGTERM stops it.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from crewdesk.llm.base import normalize_messages
from crewdesk.llm.scripted import (
    PlanResponder,
    agent_role,
    default_responder,
    ticket_text,
)

ORDER = re.compile(r"#W\d{7}")
EMAIL_TOKEN = re.compile(r"<EMAIL_\d+>")


class State:
    def __init__(self, plans: dict[str, dict], latency_ms: int) -> None:
        self.plans = plans
        self.latency = latency_ms / 1000
        self.mode = {"mode": "normal"}
        self.stats: Counter = Counter()
        self.lock = threading.Lock()

    def answer_text(self, messages: list[dict[str, str]]) -> str:
        role = agent_role(messages)
        text = ticket_text(messages)
        found = ORDER.search(text) or next((m for m in (ORDER.search(x["content"]) for x in messages) if m), None)
        spec = self.plans.get(found.group(0)) if found else None
        if spec is None:
            return default_responder(messages, role)
        token = EMAIL_TOKEN.search(text)
        plans = {
            role_key: [(tool, {**args, "email": token.group(0)} if token and "email" in args else args) for tool, args in steps]
            for role_key, steps in spec["plans"].items()
        }
        return PlanResponder(triage=spec["triage"], plans=plans, finals=spec["finals"])(messages, role)


def handler_for(state: State) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def reply(self, status: int, payload: object, headers: dict[str, str] | None = None) -> None:
            data = json.dumps(payload).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (a hang past its timeout)

        def body(self) -> dict:
            length = int(self.headers.get("Content-Length") or 0)
            return json.loads(self.rfile.read(length) or b"{}")

        def do_GET(self) -> None:
            if self.path.rstrip("/") == "/stats":
                with state.lock:
                    self.reply(200, {"mode": state.mode, "requests": dict(state.stats)})
            elif self.path.rstrip("/") == "/v1/models":
                self.reply(200, {"object": "list", "data": [{"id": "fake-model", "object": "model"}]})
            else:
                self.reply(404, {"error": {"message": "not found"}})

        def do_POST(self) -> None:
            if self.path.rstrip("/") == "/control":
                wanted = self.body()
                with state.lock:
                    state.mode = wanted
                self.reply(200, {"mode": wanted})
                return
            if not self.path.rstrip("/").endswith("/chat/completions"):
                self.reply(404, {"error": {"message": "not found"}})
                return
            request = self.body()
            with state.lock:
                mode = dict(state.mode)
                state.stats[mode["mode"]] += 1
            if mode["mode"] == "429":
                self.reply(
                    429,
                    {"error": {"message": "rate limited (fault injection)", "type": "rate_limit_error"}},
                    headers={"Retry-After": str(mode.get("retry_after", 5))},
                )
                return
            if mode["mode"] == "500":
                self.reply(500, {"error": {"message": "internal error (fault injection)", "type": "server_error"}})
                return
            if mode["mode"] == "hang":
                time.sleep(float(mode.get("hang_seconds", 10)))
            elif state.latency:
                time.sleep(state.latency)
            messages = normalize_messages(request.get("messages") or [])
            text = state.answer_text(messages)
            prompt = sum(len(m["content"]) for m in messages) // 4 + 1
            completion = len(text) // 4 + 1
            self.reply(
                200,
                {
                    "id": "chatcmpl-fake",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": request.get("model", "fake-model"),
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion},
                },
            )

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--plans", type=Path, help="JSON: order id -> {triage, plans, finals} (PlanResponder's arguments)")
    parser.add_argument("--latency-ms", type=int, default=0, help="sleep per answered request, to stand in for a model")
    args = parser.parse_args()
    plans = json.loads(args.plans.read_text()) if args.plans else {}
    server = ThreadingHTTPServer((args.host, args.port), handler_for(State(plans, args.latency_ms)))
    server.daemon_threads = True
    print(f"fake model on http://{args.host}:{args.port}/v1 with {len(plans)} plans", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
