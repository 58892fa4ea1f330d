"""tau2-bench's conversation protocol for `crewdesk eval tau2-retail --protocol conversation`: a simulated customer (an
LLM given the task's instructions and tau2's simulation guidelines, restated here in our words) writes the first
message, reads each reply crewdesk sends, and answers through the ticket's thread while the ticket waits on the
customer, until it ends the conversation or the turn cap; the store's end state is scored as for the ticket protocol.

The simulator talks to any OpenAI-compatible chat endpoint (`--user-model URL`; by default our local model on a port of
its own). Tests pass a scripted one (any object with `first` and `answer`)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

STOP = "###STOP###"
_STOPPED = re.compile(r"#{2,}\s*STOP\b#*", re.I)  # a small model often cuts the marker short ("###STOP")

GUIDELINES = (
    """You are playing a customer of an online store who writes to its support team. Stay in that role.
- Write as the customer, in the first person: short messages of one to three sentences, plain text.
- Your situation, what you know and what you want are below. Do not invent anything that is not there: no order
  numbers, addresses, e-mail addresses or wishes of your own making. If you are asked for something you do not know,
  say that you do not know it.
- Do not tell everything at once: start with your request and the details that identify you; give other details when
  the support team asks for them or when they are needed.
- When the support team asks you to confirm something, say yes only if it is exactly what your instructions want;
  otherwise say what you want instead.
- You are only asked to write when the support team's last message asks you something: answer that. If you want to
  end the conversation instead, write only """
    + STOP
)


def _scenario(task: dict[str, Any]) -> str:
    instructions = task["user_scenario"]["instructions"]
    parts = [
        ("Why you are writing", instructions.get("reason_for_call")),
        ("What you know", instructions.get("known_info")),
        ("What you do not know", instructions.get("unknown_info")),
        ("How you behave", instructions.get("task_instructions")),
    ]
    return "\n".join(f"{name}: {str(text).strip()}" for name, text in parts if text and str(text).strip())


class Simulator(Protocol):
    def first(self, task: dict[str, Any]) -> str: ...

    def answer(self, task: dict[str, Any], thread: list[tuple[str, str]]) -> str | None: ...


@dataclass
class ChatSimulator:
    """The simulated customer on an OpenAI-compatible chat endpoint (temperature 0: the same conversation twice)."""

    base_url: str
    model: str = "local"
    api_key: str = ""
    max_tokens: int = 160
    timeout: float = 300.0

    def _complete(self, task: dict[str, Any], thread: list[tuple[str, str]]) -> str:
        messages: list[dict[str, str]] = [{"role": "system", "content": f"{GUIDELINES}\n\n{_scenario(task)}"}]
        # From the simulator's side the support team's replies are the other party: "user"; its own messages "assistant".
        messages.append({"role": "user", "content": "(You open the conversation. Write your first message to the support team.)"})
        for who, text in thread:
            messages.append({"role": "assistant" if who == "customer" else "user", "content": text})
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        response = httpx.post(
            f"{self.base_url.rstrip('/')}/chat/completions",
            json={"model": self.model, "messages": messages, "temperature": 0.0, "max_tokens": self.max_tokens, "seed": 7},
            headers=headers,
            timeout=self.timeout,
        )
        response.raise_for_status()
        return str(response.json()["choices"][0]["message"]["content"] or "").strip()

    def first(self, task: dict[str, Any]) -> str:
        return _STOPPED.sub("", self._complete(task, [])).strip() or "Hello, I need help with my order."

    def answer(self, task: dict[str, Any], thread: list[tuple[str, str]]) -> str | None:
        said = self._complete(task, thread)
        return None if _STOPPED.search(said) or not said.strip() else said
