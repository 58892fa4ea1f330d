"""The new part of a reply: quoted history, signatures and mailing-list footers removed, so the crew reads what the
customer wrote this time."""

from __future__ import annotations

import re

from mailparser_reply import EmailMessage as ReplyText

REPLY_LANGUAGES = ["en", "de", "fr", "es", "it", "nl", "pl", "sv", "da", "cs", "ja", "ko", "zh"]
_FOOTER_RULE = re.compile(r"^[ \t]*_{20,}[ \t]*$", re.MULTILINE)
_TRAILING_RULE = re.compile(r"(?:\n[ \t]*[-_=]{10,}[ \t]*)+\s*\Z")


def clean_reply(text: str) -> str:
    """The newest part of a reply: quoted history and signature removed (mail-parser-reply). Never empty when text is not."""
    text = _without_list_footer(text)
    try:
        # keep_hyphen_lists: customers list orders as "- 1234"; the default would take that for a signature
        replies = ReplyText(text=text, languages=list(REPLY_LANGUAGES), keep_hyphen_lists=True).read().replies
    except Exception:  # noqa: BLE001 - a regex blow-up on odd text: keep the whole text
        replies = []
    parts = [replies[0].body] if replies else []
    for reply in replies[1:]:
        # Unquoted lines between quoted ones after an attribution are answers written inline, by this sender;
        # a block with no quoted lines at all is Outlook-style history, and so is everything after it.
        lines = reply.body.split("\n")
        if not any(line.lstrip().startswith(">") for line in lines):
            break
        parts.append("\n".join(line for line in lines if not line.lstrip().startswith(">")))
    latest = "\n\n".join(part.strip() for part in parts if part.strip())
    lines = latest.split("\n")
    # Quoted lines are history (ours or older); the library only splits at attribution lines it knows
    # ("On ... wrote:" in its languages), so drop what it left: a trailing quote with its attribution line
    # (any language: a line ending in ":" right above it), and quotes above a bottom-posted answer.
    quoted_tail = False
    while lines and (not lines[-1].strip() or lines[-1].lstrip().startswith(">")):
        quoted_tail = quoted_tail or lines[-1].lstrip().startswith(">")
        lines.pop()
    if quoted_tail and len(lines) > 1 and lines[-1].rstrip().endswith(":"):
        lines.pop()
        if len(lines) > 1 and lines[-1].count("<") > lines[-1].count(">"):  # attribution wrapped inside "Name <addr>"
            lines.pop()
    kept = "\n".join(line for line in lines if not line.lstrip().startswith(">"))
    kept = _TRAILING_RULE.sub("", kept)  # a bare rule left at the end is the stump of a removed quote or footer
    return re.sub(r"\n{3,}", "\n\n", kept).strip() or text.strip()


def _without_list_footer(text: str) -> str:
    """Mailing-list software appends a few lines under a rule of underscores; they are not the sender's words."""
    rules = list(_FOOTER_RULE.finditer(text))
    if not rules:
        return text
    head, tail = text[: rules[-1].start()], text[rules[-1].end() :]
    tail_lines = [line for line in tail.splitlines() if line.strip()]
    if head.strip() and len(tail_lines) <= 6 and not any(line.lstrip().startswith(">") for line in tail_lines):
        return head
    return text
