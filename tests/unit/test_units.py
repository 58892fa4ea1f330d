"""Small pure pieces: state machine, intake rows, rules, model-output parsing, settings."""

from __future__ import annotations

import io
import re
import subprocess
import sys
from pathlib import Path

import pytest

from crewdesk.errors import IllegalTransition, InvalidTicket, ModelOutputError
from crewdesk.intake.files import iter_file, iter_jsonl
from crewdesk.llm.output import parse_model_output
from crewdesk.settings import Settings
from crewdesk.tickets import rules
from crewdesk.tickets.models import TERMINAL, TRANSITIONS, Ticket, TicketStatus
from crewdesk.tickets.schemas import Resolution, Triage
from crewdesk.tickets.service import transition

ROOT = Path(__file__).resolve().parents[2]


def test_happy_path_transitions():
    ticket = Ticket(id=1, status="received")
    for step in ("queued", "triaging", "in_progress", "awaiting_approval", "in_progress", "resolved"):
        transition(ticket=ticket, to=TicketStatus(step))
    assert ticket.status == "resolved"


@pytest.mark.parametrize(
    ("start", "to"), [("received", "resolved"), ("resolved", "triaging"), ("escalated", "resolved"), ("queued", "awaiting_approval"), ("failed", "resolved")]
)
def test_illegal_transitions_raise(start, to):
    ticket = Ticket(id=7, status=start)
    with pytest.raises(IllegalTransition, match=f"{start} -> {to}"):
        transition(ticket=ticket, to=TicketStatus(to))
    assert ticket.status == start


def test_terminal_states_leave_only_by_requeue():
    """Escalated belongs to a human. Failed is requeued by a retry; resolved by the customer writing again; a ticket
    waiting on the customer by their answer (or a person takes it, or it closes unanswered, and a late answer resumes it)."""
    assert {TicketStatus.resolved, TicketStatus.escalated, TicketStatus.failed, TicketStatus.waiting_on_customer, TicketStatus.no_reply} == TERMINAL
    assert TRANSITIONS[TicketStatus.escalated] == frozenset()
    assert TRANSITIONS[TicketStatus.failed] == TRANSITIONS[TicketStatus.resolved] == {TicketStatus.queued}
    assert TRANSITIONS[TicketStatus.waiting_on_customer] == {TicketStatus.queued, TicketStatus.escalated, TicketStatus.no_reply}
    assert TRANSITIONS[TicketStatus.no_reply] == {TicketStatus.queued}
    assert TicketStatus.waiting_on_customer in TRANSITIONS[TicketStatus.in_progress]


def test_jsonl_rows_carry_line_numbers_and_reasons():
    rows = list(iter_jsonl(io.StringIO('{"id": 1, "body": "ok"}\n\n{"id": "2"}\n[1, 2]\n{"id": "3", "body": "x", "priority": "critical"}\n{broken\n')))
    assert [r.line for r in rows] == [1, 3, 4, 5, 6]
    assert rows[0].ticket.external_id == "1" and rows[0].ticket.source == "file"
    assert rows[1].error == "line 3: body: Field required"
    assert rows[2].error == "line 4: expected a JSON object, got list"
    assert "line 5: priority: Input should be" in rows[3].error
    assert rows[4].error.startswith("line 6: not valid JSON")
    assert len({r.external_id for r in rows}) == 5  # rejects keep a stable identity, so re-submitting does not duplicate them


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(InvalidTicket, match="no such file"):
        list(iter_file(tmp_path / "nope.jsonl"))
    (tmp_path / "a.json").write_text('[{"id": "a", "body": "hi"}, {"id": "b"}]')
    rows = list(iter_file(tmp_path / "a.json"))
    assert rows[0].ticket is not None and rows[1].error == "line 2: body: Field required"


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("I will take legal action against you", "legal_threat"),
        ("Mein Anwalt wird sich melden", "legal_threat"),
        ("the sync wiped all my files, data loss everywhere", "data_loss"),
        ("There was an unauthorized charge and my account was compromised", "security"),
    ],
)
def test_rules_fire(text, rule):
    assert rule in [hit.rule for hit in rules.scan_text(text)]


@pytest.mark.parametrize("text", ["How do I export my report?", "Please update my billing address", "The court date feature in the calendar app"])
def test_rules_stay_quiet_on_ordinary_tickets(text):
    hits = [hit.rule for hit in rules.scan_text(text)]
    assert hits in ([], ["legal_threat"])  # 'court' is a known false positive we accept: a human looks
    if "court" not in text:
        assert hits == []


def test_model_output_parsing_is_lenient_about_wrapping_and_strict_about_content():
    wrapped = 'Thought: done\nFinal Answer: ```json\n{"category": "Technical", "priority": "HIGH", "summary": "crash", "confidence": 0.7,}\n```'
    triage = parse_model_output(wrapped, Triage)
    assert (triage.category, triage.priority, triage.language) == ("technical", "high", "en")
    with pytest.raises(ModelOutputError, match="category"):
        parse_model_output('{"category": "sales", "priority": "low", "summary": "x", "confidence": 0.5}', Triage)
    with pytest.raises(ModelOutputError, match="confidence"):
        parse_model_output('{"category": "other", "priority": "low", "summary": "x", "confidence": 7}', Triage)
    with pytest.raises(ModelOutputError, match="no JSON object"):
        parse_model_output("I think this is a billing issue.", Triage)
    with pytest.raises(ModelOutputError):
        parse_model_output('{"customer_reply": ""}', Resolution)


def test_env_example_lists_every_setting():
    names = set(re.findall(r"^#?\s*(CREWDESK_[A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), re.M))
    expected = {f"CREWDESK_{name.upper()}" for name in Settings.model_fields}
    assert names == expected


def test_secrets_are_secret():
    settings = Settings(openai_api_key="sk-live-123", anthropic_api_key="ak-456")
    assert "sk-live-123" not in repr(settings) and "ak-456" not in str(settings.model_dump())


def test_importing_the_code_does_not_read_settings(tmp_path):
    """Settings are loaded explicitly: a broken environment only fails when something loads them."""
    code = "import crewdesk.cli, crews.pipeline, workers.tasks, workers.runtime, tools.registry; print('imported')"
    # HOME and CrewAI's storage in a scratch dir: importing crewai writes a secret under ~/.local/share, never in the checkout
    env = {
        "PATH": "",
        "CREWDESK_WORKER_CONCURRENCY": "not-a-number",
        "CREWDESK_LLM_PROVIDER": "nonsense",
        "CREWAI_DISABLE_TELEMETRY": "true",
        "OTEL_SDK_DISABLED": "true",
        "CREWAI_TRACING_ENABLED": "false",
        "HOME": str(tmp_path),
        "CREWAI_STORAGE_DIR": str(tmp_path / "crewai"),
    }
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "imported" in result.stdout


def test_visibility_timeout_must_outlast_a_running_ticket():
    with pytest.raises(ValueError, match="visibility_timeout"):
        Settings(visibility_timeout=600, task_time_limit=900)


def test_an_action_line_with_words_after_an_offered_tool_name_keeps_the_name():
    from crewdesk.llm.base import repair_action

    system = [
        {"role": "system", "content": "Tool Name: find_user_id_by_email\nTool Arguments: {}\nTool Name: find_user_id_by_name_zip\nTool Name: get_user_details"}
    ]
    said = 'Thought: find them\nAction: find_user_id_by_email with their e-mail, or find_user_id_by_name_zip with zip.\nAction Input: {"email": "<EMAIL_1>"}'
    assert "Action: find_user_id_by_email\nAction Input:" in repair_action(said, system)
    assert repair_action("Action: `get_user_details`\nAction Input: {}", system) == "Action: get_user_details\nAction Input: {}"
    two_lines = 'Action: find_user_id_by_email\nfind_user_id_by_name_zip with first name. Never guess.\nAction Input: {"email": "x"}'
    assert repair_action(two_lines, system) == 'Action: find_user_id_by_email\nAction Input: {"email": "x"}'
    assert repair_action("Thought: t\nAction: get_user_details", system) == "Thought: t\nAction: get_user_details"
    for untouched in ("Action: get_user_details\nAction Input: {}", "Action: refund_everything now\nAction Input: {}", "Final Answer: done"):
        assert repair_action(untouched, system) == untouched  # exact names, unknown tools and answers pass as they are
    assert repair_action("Action: get_user_detailsX\nAction Input: {}", system).startswith("Action: get_user_detailsX")  # a prefix is not a word


def test_log_lines_carry_no_email_address(capsys):
    """A delivery error names its recipients (smtplib's SMTPRecipientsRefused): the log keeps the domain, not the address."""
    import smtplib

    import structlog

    from crewdesk.logging import configure_logging, mask_addresses

    configure_logging(level="INFO", json=True)
    try:
        raise smtplib.SMTPRecipientsRefused({"amelia.patel6926@example.com": (550, b"5.1.1 user unknown")})
    except smtplib.SMTPRecipientsRefused as exc:
        structlog.get_logger("t").warning("delivery.retry", ticket_id=7, error=str(exc), exc_info=True)
    line = capsys.readouterr().err
    with capsys.disabled():  # back to the real stderr, as tests/conftest.py set it: later tests log there
        configure_logging(level="WARNING", json=True)
    assert "amelia.patel6926@example.com" not in line and "a***@example.com" in line and '"ticket_id": 7' in line
    assert mask_addresses("to Bo <bo@mail.example.org>, cc x.y+z@sub.example.co.uk") == "to Bo <b***@mail.example.org>, cc x***@sub.example.co.uk"
    assert mask_addresses("order #W123, 5 @ $3") == "order #W123, 5 @ $3"
