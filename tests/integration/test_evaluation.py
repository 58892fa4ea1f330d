"""`crewdesk eval tau2-retail`: the oracle scores 100%, a wrong action scores 0, and the numbers add up."""

from __future__ import annotations

import copy
import json

import pytest

from crewdesk.db import transaction
from crewdesk.llm.factory import LLMFactory
from crewdesk.store.service import DEFAULT_DB_JSON, load_store, read_store
from crews.eval_examples import run_set
from crews.eval_report import EvalReport, Trial, read_journal, write_report
from crews.eval_tickets import first_person, load_tasks, ticket_for
from crews.evaluation import run_eval
from crews.pipeline import Pipeline
from tests.integration.test_procedures import Planned, StandInRouter


@pytest.fixture
def eval_pipeline(settings, session_factory):
    settings.approval_threshold_usd = -1.0
    return lambda process: Pipeline(
        settings=settings.model_copy(update={"crew_process": process}), session_factory=session_factory, llm_factory=LLMFactory(settings)
    )


def test_oracle_scores_100_percent_on_the_train_split(eval_pipeline, tmp_path):
    tasks = load_tasks("train")
    assert len(tasks) == 74
    report = run_eval(pipeline=eval_pipeline("hierarchical"), tasks=tasks, trials=1, split="train", use_oracle=True, run_tag="t")
    failed = [t.task_id for t in report.trials if not t.success]
    assert failed == [] and report.success_rate == 1.0
    summary = report.summary()
    assert summary["pass^1"] == 1.0 and 0.9 < summary["tool_call_success_rate"] < 1.0  # a few reference calls fail upstream too
    assert summary["model_calls_per_ticket"] >= 1  # the oracle's crews call the (scripted) model: counted, as eval examples counts them
    page = write_report(report, tmp_path / "r.html")
    assert "<svg" in page.read_text() and json.loads(page.with_suffix(".json").read_text())["summary"]["tasks"] == 74


def test_a_wrong_action_scores_zero_for_that_task(eval_pipeline):
    tasks = [t for t in load_tasks("train") if t["id"] in ("0", "1")]
    wrong = copy.deepcopy(tasks[0]["evaluation_criteria"]["actions"])
    wrong[-1]["arguments"]["new_item_ids"] = list(reversed(wrong[-1]["arguments"]["new_item_ids"]))  # swapped: a different end state
    report = run_eval(pipeline=eval_pipeline("hierarchical"), tasks=tasks, trials=2, split="train", use_oracle=True, run_tag="w", oracle_actions={"0": wrong})
    by_task = {task_id: [t.success for t in trials] for task_id, trials in report.by_task().items()}
    assert by_task == {"0": [False, False], "1": [True, True]}
    assert report.pass_hat(1) == report.pass_hat(2) == 0.5


def test_an_interrupted_eval_resumes_from_its_journal_without_rerunning_trials(eval_pipeline, tmp_path):
    tasks = [t for t in load_tasks("train") if t["id"] in ("0", "1", "2")]
    journal = tmp_path / "r.trials.jsonl"
    ran = []

    def stop_after_two(trial):
        ran.append(trial.task_id)
        if len(ran) == 2:
            raise KeyboardInterrupt  # Ctrl-C after the second ticket

    with pytest.raises(KeyboardInterrupt):
        run_eval(
            pipeline=eval_pipeline("hierarchical"), tasks=tasks, trials=1, split="train", use_oracle=True, run_tag="a", journal=journal, progress=stop_after_two
        )
    assert [t.task_id for t in read_journal(journal)] == ["0", "1"]
    with journal.open("a") as out:
        out.write('{"task_id": "2", "tri')  # a line torn by a crash mid-write is ignored
    ran.clear()
    report = run_eval(
        pipeline=eval_pipeline("hierarchical"),
        tasks=tasks,
        trials=1,
        split="train",
        use_oracle=True,
        run_tag="b",
        journal=journal,
        progress=lambda t: ran.append(t.task_id),
    )
    assert ran == ["2"]
    assert [t.task_id for t in report.trials] == ["0", "1", "2"] and report.success_rate == 1.0
    assert [t.task_id for t in read_journal(journal)] == ["0", "1", "2"]


def test_sequential_oracle_cannot_cross_roles(eval_pipeline):
    """Task 41 needs the account specialist's address tool and billing's item tool: only the hierarchical process does both."""
    task = [t for t in load_tasks("train") if t["id"] == "41"]
    assert run_eval(pipeline=eval_pipeline("sequential"), tasks=task, trials=1, split="train", use_oracle=True, run_tag="s").success_rate == 0.0
    assert run_eval(pipeline=eval_pipeline("hierarchical"), tasks=task, trials=1, split="train", use_oracle=True, run_tag="h").success_rate == 1.0


def test_pass_hat_k_is_the_upstream_estimator():
    report = EvalReport(split="train", process="sequential", model="m")
    for i, ok in enumerate([True, True, False, True]):  # task a: 3 of 4
        report.trials.append(Trial("a", i, ok, "resolved", 1, 1, 10, 5, 0.0, 1.0))
    for i in range(4):  # task b: 0 of 4
        report.trials.append(Trial("b", i, False, "resolved", 1, 0, 10, 5, 0.0, 3.0))
    assert report.pass_hat(1) == pytest.approx((3 / 4 + 0) / 2)
    assert report.pass_hat(2) == pytest.approx((3 / 6 + 0) / 2)  # C(3,2)/C(4,2)
    assert report.pass_hat(4) == 0.0
    assert report.summary()["tool_call_success_rate"] == pytest.approx(4 / 8)


def test_tickets_read_like_the_customer_wrote_them():
    assert first_person("You want to return your order. You are Ana.") == "I want to return my order. I am Ana."
    _subject, body = ticket_for(load_tasks("train")[0])
    assert "I received my order #W2378156" in body and "I am Yusuf Rossi in zip code 19122" in body
    assert "You" not in body.replace("Thank you", "")


def test_a_ticket_set_is_scored_by_the_store_it_leaves_and_names_what_differs(settings, session_factory, tmp_path):
    """`crewdesk eval examples` on a set with `actions`: the documents a ticket changed must be exactly those its
    expected writes change. A write other than the expected one fails and says which order differs and how; a ticket
    marked resolved that fails counts as resolved-but-wrong. The procedures decide here (the router is a stand-in and
    the model scripted: neither is what is measured)."""
    body = "Hi, please take back the jigsaw puzzle from my last delivery and put the refund on my gift card. Thanks, Mason"
    right = {
        "name": "return_delivered_order_items",
        "arguments": {"order_id": "#W8998368", "item_ids": ["4572024853"], "payment_method_id": "gift_card_6486968"},
    }
    wrong = {
        "name": "return_delivered_order_items",
        "arguments": {"order_id": "#W8998368", "item_ids": ["9594745976"], "payment_method_id": "gift_card_6486968"},
    }
    rows = [
        {"id": "right", "language": "en", "customer": "mason.li4862@example.com", "body": body, "actions": [right], "expect_status": "resolved"},
        {"id": "wrong", "language": "en", "customer": "mason.li4862@example.com", "body": body, "actions": [wrong], "expect_status": "resolved"},
        {"id": "none-due", "language": "en", "customer": "mason.li4862@example.com", "body": body, "actions": [], "user_id": "never given to the ticket"},
    ]
    settings = settings.model_copy(update={"procedures": True, "approval_threshold_usd": -1.0})
    pipeline = Pipeline(
        settings=settings, session_factory=session_factory, llm_factory=LLMFactory(settings, responder=Planned()), router=StandInRouter("return_items")
    )
    with transaction(session_factory) as db:
        load_store(db=db, data=read_store(DEFAULT_DB_JSON))
    journal = tmp_path / "set.trials.jsonl"
    report = run_set(pipeline=pipeline, session_factory=session_factory, rows=rows, name="set", journal=journal)
    by_id = {t.task_id: t for t in report.trials}
    assert by_id["right"].success and by_id["right"].status == "resolved" and by_id["right"].problems == []
    assert not by_id["wrong"].success and by_id["wrong"].resolved_wrong
    assert by_id["wrong"].problems == [
        'order #W8998368: expected return requested {"return_items": ["9594745976"], "return_payment_method_id": "gift_card_6486968"}; '
        'got return requested {"return_items": ["4572024853"], "return_payment_method_id": "gift_card_6486968"}'
    ]
    assert not by_id["none-due"].success and "expected unchanged" in by_id["none-due"].problems[0]
    summary = report.summary()
    assert summary["resolved_wrong"] == 2 and summary["success_en"] == "1/3 (33.3%)" and summary["status_agrees"] == "2/2"
    assert [json.loads(line)["task_id"] for line in journal.read_text().splitlines()] == ["right", "wrong", "none-due"]
    again = run_set(pipeline=pipeline, session_factory=session_factory, rows=rows, name="set", journal=journal)  # resumes: nothing runs again
    assert [t.task_id for t in again.trials] == ["right", "wrong", "none-due"] and journal.read_text().count("\n") == 3


class ScriptedCustomer:
    """The conversation protocol's simulated customer, scripted: its first message, then its answers in order (the real
    one is an LLM on an OpenAI-compatible endpoint, crews/eval_conversation.ChatSimulator)."""

    def __init__(self, first: str, *answers: str) -> None:
        self.opening, self.answers, self.threads = first, list(answers), []

    def first(self, task):
        return self.opening

    def answer(self, task, thread):
        self.threads.append(thread)
        return self.answers.pop(0) if self.answers else None


def test_the_conversation_protocol_answers_the_question_in_the_thread_and_scores_the_end_state(settings, session_factory):
    """A task whose customer has two smart watches in one order: the ticket asks which, the simulated customer answers
    in the thread, the return is written, and the end state matches the reference (one return, the black watch)."""
    task = {
        "id": "conv-1",
        "user_scenario": {
            "instructions": {
                "reason_for_call": "You want to return one of your two smart watches (the black one: do not reveal which until the agent asks).",
                "known_info": "amelia.patel6926@example.com",
            }
        },
        "evaluation_criteria": {
            "actions": [
                {
                    "name": "return_delivered_order_items",
                    "arguments": {"order_id": "#W6497157", "item_ids": ["9320099340"], "payment_method_id": "gift_card_3751659"},
                }
            ]
        },
    }
    settings = settings.model_copy(update={"procedures": True, "approval_threshold_usd": -1.0})
    pipeline = Pipeline(settings=settings, session_factory=session_factory, llm_factory=LLMFactory(settings), router=StandInRouter("return_items"))
    customer = ScriptedCustomer("Hi, I'd like to return my smart watch. My e-mail is amelia.patel6926@example.com.", "The black one.")
    report = run_eval(pipeline=pipeline, tasks=[task], trials=1, split="train", use_oracle=False, run_tag="c", simulator=customer)
    (trial,) = report.trials
    assert trial.success and trial.status == "resolved" and trial.turns == 2
    ((first, question),) = [t[:2] for t in customer.threads]
    assert first == ("customer", customer.opening) and question[0] == "support" and "Which one" in question[1]
    assert report.summary()["customer_messages_per_ticket"] == 2

    opened_by_ticket = ScriptedCustomer("(not used)", "The black one.")  # --first-message ticket: the ticket protocol's ticket opens
    report = run_eval(
        pipeline=pipeline, tasks=[task], trials=1, split="train", use_oracle=False, run_tag="f", simulator=opened_by_ticket, first_message="ticket"
    )
    assert report.trials[0].success and opened_by_ticket.threads[0][0][1].startswith("Hello,\n\nI want to return one of my two smart watches")

    ticket_only = run_eval(pipeline=pipeline, tasks=[task], trials=1, split="train", use_oracle=False, run_tag="t")
    assert not ticket_only.trials[0].success and ticket_only.trials[0].status == "waiting_on_customer"  # one ticket cannot answer


def test_the_report_shows_another_runs_journal_beside_it_with_customer_messages_and_seconds(tmp_path):
    """`crewdesk eval report JOURNAL --compare JOURNAL` (and `eval tau2-retail --compare`): the conversation run and the
    ticket protocol's side by side, per task and in the summary, from the journals alone."""
    import json
    import subprocess

    from tests.helpers import CREWDESK, ROOT

    def journal(name: str, rows: list[tuple[str, bool, str, int, float]]):
        path = tmp_path / f"{name}.trials.jsonl"
        path.write_text(
            "".join(
                json.dumps(
                    {"task_id": t, "trial": 0, "success": ok, "status": status, "tool_calls": 1, "tool_ok": 1, "tokens_in": 0, "tokens_out": 0}
                    | {"cost_usd": 0.0, "seconds": seconds, "turns": turns}
                )
                + "\n"
                for t, ok, status, turns, seconds in rows
            )
        )
        return path

    conversation = journal("conv", [("0", True, "resolved", 2, 7.5), ("1", False, "resolved", 3, 12.25)])
    ticket = journal("ticket", [("0", True, "resolved", 1, 0.5), ("1", False, "escalated", 1, 0.75)])
    out = tmp_path / "side.html"
    done = subprocess.run(
        [CREWDESK, "eval", "report", str(conversation), "--compare", str(ticket), "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    page = out.read_text()
    assert "<th>ticket: result</th>" in page and "<th>customer messages</th>" in page
    assert "<td>fail</td><td>resolved</td><td>3</td>" in page and "<td>fail</td><td>escalated</td><td>1</td><td>0.75</td>" in page
    body = json.loads(out.with_suffix(".json").read_text())
    assert body["summary"]["resolved_wrong"] == 1 and body["beside"]["summary"]["resolved_wrong"] == 0
    assert body["summary"]["customer_messages_per_ticket"] == 2.5 and body["beside"]["name"] == "ticket"
    missing = subprocess.run([CREWDESK, "eval", "report", str(tmp_path / "none.trials.jsonl")], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert missing.returncode != 0 and "no such journal" in missing.stderr + missing.stdout
