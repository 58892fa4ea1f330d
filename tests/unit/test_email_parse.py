"""E-mail parsing, cleaning and file sources, without a database.

Fixtures are in tests/fixtures/email (licences sit beside them; SOURCES.md lists each file):
- cpython-test_email/: CPython 3.13 Lib/test/test_email/data (PSF-2.0): MIME edge cases, charsets, DSNs.
- ruby-mail-gem/: mikel/mail spec/fixtures/emails (MIT): RFC 2822 appendix examples, error mails, multi-charset, bounces.
- mimekit/: jstedfast/MimeKit test data (MIT): DSNs, MDNs, mbox files, TNEF samples.
- mailgun-talon/: mailgun/talon tests/fixtures (Apache-2.0): client replies with expected reply text, signatures.
- zapier-email-reply-parser/: zapier/email-reply-parser test/emails (MIT): reply bodies; the expected splits are
  those of upstream's test_email_reply_parser.py.
"""

from __future__ import annotations

import mailbox
import re
from email.message import EmailMessage
from pathlib import Path

import pytest

from crewdesk.intake.email.cleaning import clean_reply
from crewdesk.intake.email.parse import EmailRejected, parse_email, subject_tag, synthetic_message_id
from crewdesk.intake.email.sources import EmailSourceError, iter_messages

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "email"
NOT_MAIL = ("LICENSE", "SOURCES", "README", "PSF-LICENSE", "MIT-LICENSE")
OWN = frozenset({"support@example.com"})
ALLOWED = ["image/*", "application/pdf", "text/plain", "text/csv", "message/rfc822"]


def parse(raw: bytes, *, max_bytes: int = 10 * 1024 * 1024, allowed: list[str] = ALLOWED):
    return parse_email(raw, own_addresses=OWN, max_attachment_bytes=max_bytes, allowed_types=allowed)


def fixture(relative: str) -> bytes:
    return (FIXTURES / relative).read_bytes()


def fixture_messages() -> list[tuple[str, bytes]]:
    """Every fixture file (mbox files split into their messages), in path order, minus licences and READMEs."""
    found = []
    for path in sorted(p for p in FIXTURES.rglob("*") if p.is_file()):
        if path.name.startswith(NOT_MAIL):
            continue
        for ref, raw in iter_messages(path):
            found.append((str(Path(ref).relative_to(FIXTURES)) if "#" not in ref else ref.replace(f"{FIXTURES}/", ""), raw))
    return found


def mail(body: str = "Where is my order 1234?", *, subtype: str = "plain", charset: str = "utf-8", **headers: str) -> bytes:
    message = EmailMessage()
    defaults = {"From": "Ana Lima <ana@example.com>", "To": "support@example.com", "Subject": "Order", "Message-ID": "<m1@example.com>"}
    for name, value in {**defaults, **{k.replace("_", "-"): v for k, v in headers.items()}}.items():
        message[name] = value
    message.set_content(body, subtype=subtype, charset=charset)
    return message.as_bytes()


def raw_mail(body: bytes, charset: str) -> bytes:
    """A mail whose text part declares `charset` and carries `body` as 8-bit bytes, whatever they are."""
    head = mail().split(b"\n\n", 1)[0].replace(b'charset="utf-8"', f'charset="{charset}"'.encode())
    return head.replace(b"Content-Transfer-Encoding: 7bit", b"Content-Transfer-Encoding: 8bit") + b"\n\n" + body


def test_every_fixture_parses_or_is_rejected_with_a_one_line_reason():
    messages = fixture_messages()
    assert len(messages) > 300
    outcomes = {"parsed": 0, "ignored": 0, "rejected": 0}
    for ref, raw in messages:
        try:
            parsed = parse(raw)
        except EmailRejected as exc:
            assert str(exc) and "\n" not in str(exc), ref
            outcomes["rejected"] += 1
            continue
        outcomes["ignored" if parsed.ignore_reason else "parsed"] += 1
        assert parsed.message_id and "<" not in parsed.message_id, ref
        if parsed.ignore_reason is None:
            assert parsed.sender and parsed.text.strip() and parsed.cleaned.strip(), ref
        assert "\x00" not in parsed.text + parsed.cleaned + parsed.subject, ref
        parsed.text.encode("utf-8")  # no lone surrogates: PostgreSQL would refuse them
        parsed.subject.encode("utf-8")
    assert min(outcomes.values()) > 10, outcomes


def test_charsets_decode():
    assert "あいうえお" in parse(fixture("ruby-mail-gem/multi_charset/japanese_shift_jis.eml")).text
    assert "すみません" in parse(fixture("ruby-mail-gem/multi_charset/japanese_iso_2022.eml")).text
    assert "스티해" in parse(fixture("ruby-mail-gem/multi_charset/ks_c_5601-1987.eml")).text
    japanese = parse(fixture("ruby-mail-gem/multi_charset/japanese.eml"))
    assert japanese.subject == "まみむめも"  # RFC 2047 encoded-word
    assert parse(fixture("ruby-mail-gem/rfc6532/utf8_headers.eml")).sender == "jdöe@mächine.example"  # raw UTF-8 headers
    # CPython's mixed-charset multiparts (iso-8859-1/2/3, koi8-r): the parts decode, but every one is empty.
    for name in ("msg_08.txt", "msg_09.txt", "msg_12.txt", "msg_12a.txt"):
        with pytest.raises(EmailRejected, match="no text"):
            parse(fixture(f"cpython-test_email/{name}"))
    lyrics = parse(fixture("cpython-test_email/msg_10.txt"))  # 7bit, base64 and quoted-printable parts in iso-8859-1
    assert "This is a Base64 encoded message." in lyrics.text and "This has no Content-Transfer-Encoding" in lyrics.text
    assert "Testing email forwarding" in parse(fixture("cpython-test_email/msg_46.txt")).text  # iso-8859-15

    for text, charset in (
        ("Zażółć gęślą jaźń", "iso-8859-2"),
        ("Привет, где мой заказ?", "koi8-r"),
        ("注文はどこですか", "shift_jis"),
        ("주문이 어디에 있나요", "euc-kr"),
        ("Grüße aus Köln", "utf-7"),
    ):
        parsed = parse(raw_mail(text.encode(charset), charset))
        assert parsed.text == text and not parsed.defects, charset


def test_unknown_and_lying_charsets_decode_with_a_defect():
    parsed = parse(raw_mail(b"Where is my order?", "x-klingon"))
    assert parsed.text == "Where is my order?" and any("x-klingon" in d for d in parsed.defects)
    parsed = parse(raw_mail(b"Caf\xe9 ferm\xe9", "us-ascii"))  # 8-bit text under an ASCII label
    assert parsed.text == "Café fermé" and any("windows-1252" in d for d in parsed.defects)
    parsed = parse(raw_mail("Grüße".encode(), "euc-jp"))  # a label the bytes do not fit, but UTF-8 does
    assert parsed.text == "Grüße" and any("is UTF-8" in d for d in parsed.defects)
    parsed = parse(raw_mail(b"ok \xff\xfe bytes", "utf-8"))
    assert parsed.text.startswith("ok ") and "\ufffd" in parsed.text and any("replaced" in d for d in parsed.defects)


def test_html_only_mail_becomes_text_and_no_html_is_kept():
    html = (
        '<html><head><style>p{color:red}</style><script>alert("x")</script></head><body><p>My <b>invoice</b> is '
        '<a href="https://example.com/i/7">here</a>.</p><img src="https://tracker.example/p.gif"></body></html>'
    )
    parsed = parse(mail(html, subtype="html"))
    assert "invoice" in parsed.text and "https://example.com/i/7" in parsed.text
    for leftover in ("<", "alert", "color:red", "tracker"):
        assert leftover not in parsed.text


def test_text_plain_is_preferred_over_html():
    message = EmailMessage()
    message["From"], message["Subject"] = "ana@example.com", "Both"
    message.set_content("the plain text")
    message.add_alternative("<p>the <b>html</b> version</p>", subtype="html")
    assert parse(message.as_bytes()).text == "the plain text"


@pytest.mark.parametrize(
    "name", ["android", "aol", "apple_mail", "apple_mail_2", "comcast", "gmail", "hotmail", "iphone", "outlook", "sparrow", "thunderbird", "yahoo"]
)
def test_talon_client_replies_are_cleaned_to_the_reply(name):
    """mailgun-talon standard_replies: every client's reply to "Hi" is "Hello" (talon keeps mobile and Sparrow
    signatures in its expected text, iphone_reply_text and sparrow_reply_text; we strip those too)."""
    parsed = parse(fixture(f"mailgun-talon/standard_replies/{name}.eml"))
    assert parsed.cleaned == "Hello", parsed.cleaned
    assert "Hi" in parsed.text  # the full text keeps the history
    if name in ("iphone", "sparrow"):
        expected = (FIXTURES / f"mailgun-talon/standard_replies/{name}_reply_text").read_text()
        assert expected.startswith(parsed.cleaned)


def zapier(name: str) -> str:
    return (FIXTURES / "zapier-email-reply-parser" / name).read_text(encoding="utf-8")


def test_zapier_replies_lose_quotes_and_signatures():
    """Expectations follow upstream zapier/email-reply-parser's test_email_reply_parser.py."""
    bottom_post = clean_reply(zapier("email_1_2.txt"))  # "Hi," then an answer written below the quote
    assert bottom_post.startswith("Hi,") and "You can list the keys for the bucket" in bottom_post
    assert "Hi folks" not in bottom_post and "riak-users mailing list" not in bottom_post and ">" not in bottom_post
    assert clean_reply(zapier("email_1_3.txt")) == "Oh thanks.\n\nHaving the function would be great.\n\n-Abhishek Kona"
    assert clean_reply(zapier("correct_sig.txt")) == "this is an email with a correct -- signature."
    for mobile in ("email_BlackBerry.txt", "email_iPhone.txt", "email_multi_word_sent_from_my_mobile_device.txt"):
        assert clean_reply(zapier(mobile)) == "Here is another email"
    assert "Sent from my desk, is much easier then my mobile phone." in clean_reply(zapier("email_sent_from_my_not_signature.txt"))
    assert clean_reply(zapier("email_sig_delimiter_in_middle_of_line.txt")).endswith("kthxbai")
    assert "- how about bullets\n- and another" in clean_reply(zapier("email_bullets.txt"))  # a list is not a signature
    assert clean_reply(zapier("email_2_2.txt")) == "Outlook with a reply directly above line"
    assert clean_reply(zapier("email_headers_no_delimiter.txt")) == "And another reply!"
    talon = (FIXTURES / "mailgun-talon/signature/emails/stripped").joinpath
    assert clean_reply(talon("short_url_body").read_text()) == "Simone,\n\nIt is 'example.com'. Please let me know what you see."


def test_cleaning_never_empties_a_message():
    assert clean_reply("> only a quote\n> nothing else") == "> only a quote\n> nothing else"
    parsed = parse(mail("On Mon, Ana wrote:\n> the whole mail is a quote"))
    assert parsed.cleaned.strip()


@pytest.mark.parametrize(
    "headers, reason",
    [
        ({"Auto_Submitted": "auto-replied"}, "auto-submitted"),
        ({"X_Auto_Response_Suppress": "All"}, "X-Auto-Response-Suppress"),
        ({"Precedence": "bulk"}, "Precedence: bulk"),
        ({"Precedence": "auto_reply"}, "Precedence: auto_reply"),
        ({"List_Id": "<news.example.com>"}, "mailing list"),
        ({"List_Unsubscribe": "<mailto:leave@example.com>"}, "mailing list"),
        ({"From": "MAILER-DAEMON@mx.example.com"}, "system sender"),
        ({"From": "postmaster@example.org"}, "system sender"),
        ({"From": "Support <SUPPORT@example.com>"}, "loop protection"),
        ({"X_Crewdesk_Ticket": "17"}, "loop protection"),
        ({"Return_Path": "<>"}, "null Return-Path"),
    ],
)
def test_mail_that_must_not_be_answered_is_flagged(headers, reason):
    parsed = parse(mail(**headers))
    assert parsed.ignore_reason is not None and reason in parsed.ignore_reason


def test_ordinary_mail_and_auto_submitted_no_are_answered():
    assert parse(mail()).ignore_reason is None
    assert parse(mail(Auto_Submitted="no")).ignore_reason is None


def test_bounces_and_reports_are_ignored():
    for name in sorted((FIXTURES / "ruby-mail-gem/multipart_report_emails").iterdir()):
        assert parse(name.read_bytes()).ignore_reason, name
    assert "report-type=delivery-status" in parse(fixture("cpython-test_email/msg_05.txt")).ignore_reason  # From: foo, no address
    assert "disposition-notification" in parse(fixture("mimekit/messages/disposition-notification.txt")).ignore_reason
    assert parse(fixture("mimekit/messages/bounce.txt")).ignore_reason == "auto-submitted: auto-replied"


def test_message_ids_are_normalised_or_synthesised():
    parsed = parse(mail(Message_ID="  <Abc.123@Example.COM> ", In_Reply_To="<p1@x>", References="<r0@x>  <r1@x>,<p1@x>"))
    assert parsed.message_id == "Abc.123@Example.COM"
    assert parsed.in_reply_to == "p1@x" and parsed.references == ["r0@x", "r1@x", "p1@x"]
    raw = fixture("ruby-mail-gem/rfc2822/example01.eml")
    assert parse(raw).message_id == "1234@local.machine.example"
    without = mail().replace(b"Message-ID: <m1@example.com>\n", b"")
    assert parse(without).message_id == synthetic_message_id(without) == parse(without).message_id
    assert parse(without).message_id.startswith("sha256-") and parse(without).message_id.endswith("@crewdesk.invalid")


def test_rejections_have_clear_reasons():
    with pytest.raises(EmailRejected, match="not an RFC 5322 message"):
        parse(fixture("mimekit/tnef/winmail.tnef"))
    with pytest.raises(EmailRejected, match="not an RFC 5322 message: empty"):
        parse(b"")
    with pytest.raises(EmailRejected, match="no usable From address"):
        parse(mail(From="Ana Lima"))
    with pytest.raises(EmailRejected, match="no usable From address"):
        parse(fixture("cpython-test_email/msg_18.txt"))  # no From header at all
    only_attachment = parse(fixture("ruby-mail-gem/attachment_emails/attachment_only_email.eml"))  # a ticket, not a rejection
    assert only_attachment.text.startswith("(The customer wrote no text and sent 1 attachment(s):") and len(only_attachment.attachments) == 1
    with pytest.raises(EmailRejected, match="broken MIME"):
        parse(fixture("cpython-test_email/msg_41.txt"))  # multipart without a boundary
    with pytest.raises(EmailRejected) as caught:
        parse_email(None, own_addresses=OWN, max_attachment_bytes=1, allowed_types=[])  # type: ignore[arg-type]
    assert "not an RFC 5322 message" in str(caught.value)


def test_a_parser_failure_becomes_a_rejection(monkeypatch):
    import crewdesk.intake.email.mime as module

    def explode(*args, **kwargs):
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(module, "_walk", explode)
    with pytest.raises(EmailRejected, match=r"^unparseable: RecursionError: maximum recursion depth exceeded$"):
        parse(mail())


def test_outlook_boundaries_with_equals_signs_are_read():
    parsed = parse(fixture("ruby-mail-gem/mime_emails/raw_email_with_illegal_boundary.eml"))
    assert "This is an outlook test" in parsed.text and "------=_NextPart" not in parsed.text


def test_attachment_limits_and_types():
    message = EmailMessage()
    message["From"], message["Subject"] = "ana@example.com", "Files"
    message.set_content("Screenshots attached.")
    message.add_attachment(b"\x89PNG small", maintype="image", subtype="png", filename="shot.png")
    message.add_attachment(b"%PDF" + b"x" * 5000, maintype="application", subtype="pdf", filename="../../etc/invoice.pdf")
    message.add_attachment(b"MZ binary", maintype="application", subtype="x-msdownload", filename="setup.exe")
    parsed = parse(message.as_bytes(), max_bytes=1000)
    by_name = {a.filename: a for a in parsed.attachments}
    assert set(by_name) == {"shot.png", "invoice.pdf", "setup.exe"}  # no path survives in a file name
    assert by_name["shot.png"].data == b"\x89PNG small" and by_name["shot.png"].refused_reason is None
    assert by_name["invoice.pdf"].data is None and by_name["invoice.pdf"].refused_reason == "over the size limit (5004 > 1000 bytes)"
    assert by_name["setup.exe"].data is None and by_name["setup.exe"].refused_reason == "type application/x-msdownload is not allowed"
    assert by_name["invoice.pdf"].size == 5004 and len(by_name["invoice.pdf"].sha256) == 64
    assert parsed.text == "Screenshots attached."


def test_subject_tag():
    assert subject_tag("Re: Refund [crewdesk #123]") == 123
    assert subject_tag("AW: [CrewDesk # 7] Rechnung") == 7
    assert subject_tag("Re: order #123") is None and subject_tag("") is None


def test_sources_split_mbox_and_read_maildir_and_directories(tmp_path):
    mbox_refs = [ref for ref, _ in iter_messages(FIXTURES / "mimekit/mbox/content-length.mbox.txt")]
    assert len(mbox_refs) == 29 and mbox_refs[0].endswith("#1")
    unmunged = [raw for _, raw in iter_messages(FIXTURES / "mimekit/mbox/unmunged.mbox.txt")]
    assert unmunged[0].startswith(b"From: Jeffrey Stedfast")  # the byte-order mark does not cost the first message

    box = mailbox.Maildir(tmp_path / "Maildir", create=True)
    for number in range(3):
        box.add(mail(f"message {number}", Message_ID=f"<md{number}@example.com>"))
    (tmp_path / "Maildir" / "tmp" / "half-delivered").write_bytes(b"From: x@example.com\n\npartial")
    (tmp_path / "loose").mkdir()
    (tmp_path / "loose" / "a.eml").write_bytes(mail("loose one"))
    (tmp_path / "loose" / ".hidden").write_bytes(b"not mail")
    refs = [ref for ref, _ in iter_messages(tmp_path)]
    assert len(refs) == 4 and sum(":" in Path(r).name or "Maildir:" in r for r in refs) == 3
    assert [raw for ref, raw in iter_messages(tmp_path / "Maildir")] and not any("half-delivered" in r for r in refs)
    with pytest.raises(EmailSourceError, match="no such file"):
        list(iter_messages(tmp_path / "missing"))


def test_deep_nesting_is_a_clear_rejection_and_a_forwarded_bounce_is_not_ignored():
    def nested(levels: int) -> bytes:
        body = b"Content-Type: text/plain\n\nhello\n"
        for level in range(levels):
            body = b'Content-Type: multipart/mixed; boundary="b%d"\n\n--b%d\n' % (level, level) + body + b"\n--b%d--\n" % level
        return b"From: a@example.com\nSubject: deep\nMIME-Version: 1.0\n" + body

    assert parse(nested(10)).cleaned == "hello"
    with pytest.raises(EmailRejected, match="MIME nested deeper than 32 levels"):
        parse(nested(40))
    with pytest.raises(EmailRejected, match=r"^unparseable: RecursionError"):
        parse(nested(3000))  # the standard library's parser gives up first

    forwarded = EmailMessage()
    forwarded["From"], forwarded["Subject"] = "ana@example.com", "Fwd: this bounced, why?"
    forwarded.set_content("My mail to you bounced, see attached.")
    forwarded.add_attachment(fixture("cpython-test_email/msg_16.txt"), maintype="message", subtype="rfc822", filename="bounce.eml")
    parsed = parse(forwarded.as_bytes())
    assert parsed.ignore_reason is None and parsed.cleaned == "My mail to you bounced, see attached."
    assert [a.content_type for a in parsed.attachments] == ["message/rfc822"]


# --- Outlook's winmail.dat (TNEF): unpacked into its files, against MimeKit's expected extractions --------------------

TNEF_DIR = FIXTURES / "mimekit" / "tnef"


def outlook_mail(tnef: bytes, *, text: str | None = "See the attached files.") -> bytes:
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "ana@example.com", "support@example.com", "Files"
    message["Message-ID"] = "<tnef@example.com>"
    if text is not None:
        message.set_content(text)
    message.add_attachment(tnef, maintype="application", subtype="ms-tnef", filename="winmail.dat")
    return message.as_bytes()


@pytest.mark.parametrize("name", sorted(p.stem for p in TNEF_DIR.glob("*.tnef")))
def test_winmail_dat_is_unpacked_into_the_files_inside_it(name):
    parsed = parse(outlook_mail((TNEF_DIR / f"{name}.tnef").read_bytes()), allowed=["*/*"])

    # MimeKit's extraction of each sample sits in a folder of that name; message.* there is the body, not a file.
    # Where two attachments share a name (winmail: "Untitled Attachment"), MimeKit's copies on disk carry ".1", ".2".
    listed = {line for line in (TNEF_DIR / f"{name}.list").read_text().splitlines() if line}
    on_disk = [p.name for p in (TNEF_DIR / name).iterdir() if not p.name.startswith("message.")]
    expected = sorted(re.sub(r"\.\d$", "", n) if re.sub(r"\.\d$", "", n) in listed else n for n in on_disk)
    assert sorted(a.filename for a in parsed.attachments) == expected  # body.tnef holds no file, only the body
    assert "application/ms-tnef" not in {a.content_type for a in parsed.attachments}  # the container itself is not kept
    for attachment in parsed.attachments:
        extracted = TNEF_DIR / name / attachment.filename
        assert attachment.data and attachment.size == len(attachment.data) and attachment.refused_reason is None
        if extracted.exists():  # the fixture copies of text files have LF line ends; Outlook wrote CRLF
            assert attachment.data.replace(b"\r\n", b"\n") == extracted.read_bytes().replace(b"\r\n", b"\n"), attachment.filename
    assert parsed.text == "See the attached files."


def test_winmail_dat_types_and_the_allow_list_apply_to_what_is_inside():
    parsed = parse(outlook_mail((TNEF_DIR / "attachments.tnef").read_bytes()))  # the default allow-list
    kinds = {a.filename: (a.content_type, a.refused_reason) for a in parsed.attachments}
    assert kinds == {"zappa_av1.jpg": ("image/jpeg", None), "bookmark.htm": ("text/html", "type text/html is not allowed")}


def test_an_outlook_mail_whose_only_body_is_inside_winmail_dat_is_read_from_it():
    parsed = parse(outlook_mail((TNEF_DIR / "body.tnef").read_bytes(), text=None))
    assert "TNEF (winmail.dat) unpacked: 0 file(s), and the body" in parsed.defects
    assert parsed.text.startswith("THE BILL OF RIGHTS") and "Amendments 1-10 of the Constitution" in parsed.text  # MimeKit's body/message.html
    assert "BILL OF RIGHTS" in (TNEF_DIR / "body" / "message.html").read_text(errors="replace") and parsed.attachments == []


def test_a_broken_winmail_dat_is_kept_as_it_is_with_the_reason():
    parsed = parse(outlook_mail(b"\x78\x9f\x3e\x22" + b"garbage" * 10), allowed=["*/*"])
    [kept] = parsed.attachments
    assert (kept.filename, kept.content_type) == ("winmail.dat", "application/ms-tnef")
    assert any(d.startswith("TNEF attachment could not be unpacked") for d in parsed.defects)


@pytest.mark.parametrize("name", ["attachments", "long-filename", "winmail"])
def test_a_rich_text_body_inside_winmail_dat_is_read_as_text(name):
    from crewdesk.intake.email.attachments import rtf_text

    parsed = parse(outlook_mail((TNEF_DIR / f"{name}.tnef").read_bytes(), text=None), allowed=["*/*"])
    expected = rtf_text((TNEF_DIR / name / "message.rtf").read_bytes(), [])  # MimeKit's decompression of the same body
    assert expected and parsed.text == expected


# --- recovery from MIME defects (tests/fixtures/email/recovery: the project's own messages) ---------------------------


def strict(raw: bytes) -> EmailMessage:
    """The message as the standard library's default policy alone reads it: each recovery fixture shows its defect here."""
    from email import policy
    from email.parser import BytesParser

    return BytesParser(policy=policy.default).parsebytes(raw)


def test_recovery_a_folded_boundary_without_its_semicolon_is_found():
    raw = fixture("recovery/folded-boundary-without-semicolon.eml")
    assert strict(raw).get_boundary() is None and not strict(raw).is_multipart()  # "boundary never appears"
    parsed = parse(raw)
    assert parsed.text == "My order 1001 never arrived." and "--sep-1" not in parsed.text
    assert "Content-Type: missing ';' before a parameter restored" in parsed.defects


def test_recovery_a_named_inline_text_part_after_the_body_is_an_attachment():
    raw = fixture("recovery/inline-named-text-part.eml")
    parsed = parse(raw)
    assert parsed.text == "The app crashes on start; the log is attached."
    assert [(a.filename, a.content_type, a.data) for a in parsed.attachments] == [("x.txt", "text/plain", b"2026-05-04 10:02:01 FATAL null pointer in Startup")]
    # Still body: a named inline part that is the first text, and the named renderings of a multipart/alternative.
    alone = mail("Order 17 is late.").replace(b"Content-Type: text/plain", b"Content-Disposition: inline; filename=body.txt\nContent-Type: text/plain")
    assert parse(alone).text == "Order 17 is late." and parse(alone).attachments == []


def test_recovery_a_part_with_two_content_types_keeps_its_text():
    raw = fixture("recovery/two-content-type-fields.eml")
    assert [p.get_content_type() for p in strict(raw).iter_parts()] == ["application/octet-stream"]  # the text lost
    parsed = parse(raw)
    assert parsed.text == "Please cancel my subscription." and parsed.attachments == []
    assert "2 Content-Type fields: read text/plain" in parsed.defects
    plain_first = mail("Hello").replace(b"Content-Type: text/plain", b"Content-Type: text/plain\nContent-Type: application/pdf")
    assert parse(plain_first).text == "Hello"  # the first stays when it is as readable


@pytest.mark.parametrize("ending", [b"  \r\n", b" \t\r \n", b"  \r\r\n"])
def test_recovery_a_transfer_encoding_ending_in_spaces_and_a_stray_cr_is_decoded(ending):
    raw = fixture("recovery/quoted-printable-header-trailing-space-cr.eml")
    assert "=E2=99=9A" in strict(raw).get_content()  # left undecoded
    parsed = parse(raw.replace(b"quoted-printable  \r\n", b"quoted-printable" + ending))
    assert parsed.text == "The black king ♚ is missing from my chess set."
    assert "Content-Transfer-Encoding: stray CR or trailing whitespace removed" in parsed.defects


def test_recovery_a_trailing_closing_delimiter_is_not_text():
    raw = fixture("recovery/indented-closing-delimiter.eml")
    assert strict(raw).get_body().get_content().rstrip().endswith("--1--")  # kept in the text
    parsed = parse(raw)
    assert parsed.text == parsed.cleaned == "Where is my refund for order 1005?"
    assert "MIME delimiter line left in a text part: removed" in parsed.defects
    soft_break = raw.replace(b"  --1--", b"--1--=").replace(b"charset=utf-8\n", b"charset=utf-8\nContent-Transfer-Encoding: quoted-printable\n")
    assert parse(soft_break).text == "Where is my refund for order 1005?"
    mine = parse(mail("Thanks!\n\n--1--"))  # not a multipart: no boundary of its own, so the customer's text is kept
    assert mine.text.endswith("--1--")


def test_recovery_a_garbled_first_header_line_is_dropped():
    raw = fixture("recovery/garbled-first-header-line.eml")
    assert strict(raw).keys() == []  # the whole mail read as a body without header fields
    parsed = parse(raw)
    assert (parsed.sender, parsed.subject, parsed.message_id) == ("ana@example.com", "Garbled first line", "recovery-6@example.com")
    assert parsed.text == "My password reset link has expired."
    assert parsed.defects[0] == "garbled header line(s) before the header fields dropped: '>From ana@example.com Mon May  4 10:06:00 2026'"
    # A reply body quoting an Outlook header block is not a mail whose first line is garbled: no Date, still rejected.
    quoted = b"See below\nFrom: CRM <crm@example.com>\nSent: Friday\nSubject: x\n\nold text\n"
    with pytest.raises(EmailRejected, match=r"^not an RFC 5322 message: no header fields \(first line: 'See below'\)$"):
        parse(quoted)


def test_a_mail_without_a_usable_from_is_read_for_a_person():
    from crewdesk.intake.email.parse import NeedsPerson

    with pytest.raises(NeedsPerson) as caught:
        parse(mail("Where is my order?", From="Ana Lima"))
    assert str(caught.value) == "no usable From address (From: Ana Lima): nobody can be answered"
    assert caught.value.parsed.text == caught.value.parsed.cleaned == "Where is my order?" and caught.value.parsed.sender == ""
    with pytest.raises(EmailRejected, match=r"^no text: .*; and no usable From address \(no From header\)$") as no_text:
        parse(fixture("cpython-test_email/msg_18.txt"))
    assert not isinstance(no_text.value, NeedsPerson)
