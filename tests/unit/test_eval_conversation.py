"""The conversation protocol's simulated customer (crews/eval_conversation.py) against a tiny OpenAI-compatible server
in this process (the real one is the local model; what is tested here is the protocol around it, not its answers)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from crews.eval_conversation import GUIDELINES, ChatSimulator

TASK = {
    "user_scenario": {
        "instructions": {
            "reason_for_call": "You want to return your black smart watch.",
            "known_info": "Your e-mail is amelia@example.com.",
            "unknown_info": "You do not remember the order number.",
        }
    }
}


@pytest.fixture
def chat():
    """A chat endpoint that answers each request with the next scripted reply and keeps the requests it got."""
    seen: list[dict] = []
    replies: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            seen.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            body = json.dumps({"choices": [{"message": {"role": "assistant", "content": replies.pop(0)}}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1", seen, replies
    server.shutdown()


def test_the_customer_opens_answers_in_role_and_ends_with_the_marker_even_cut_short(chat):
    url, seen, replies = chat
    replies.extend(["Hi, I want to return my smart watch. amelia@example.com", "The black one.", "Thanks! ###STOP"])
    customer = ChatSimulator(base_url=url)
    first = customer.first(TASK)
    thread = [("customer", first), ("support", "Which one do you mean: silver or black?")]
    assert first.startswith("Hi, I want to return") and customer.answer(TASK, thread) == "The black one."
    assert customer.answer(TASK, [*thread, ("customer", "The black one."), ("support", "Done.")]) is None  # "###STOP", cut short

    system = seen[0]["messages"][0]
    assert system["role"] == "system" and system["content"].startswith(GUIDELINES)
    assert "Why you are writing: You want to return your black smart watch." in system["content"]
    assert "What you do not know: You do not remember the order number." in system["content"]
    # from the simulator's side, our replies are the other party (user) and its own messages are its turns (assistant)
    assert [m["role"] for m in seen[1]["messages"][1:]] == ["user", "assistant", "user"]
    assert seen[1]["messages"][-1]["content"] == "Which one do you mean: silver or black?"
    assert all(request["temperature"] == 0.0 for request in seen)
