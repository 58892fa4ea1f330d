"""Which Authentication-Results fields make an e-mail's From verified (crewdesk.intake.email.authresults): only a DMARC
pass of our own MTA's authserv-id for the From's domain, on a mail with one From address."""

from __future__ import annotations

import pytest

from crewdesk.intake.email.authresults import verify

OURS = "mx.crewdesk.example"


def verified(fields: list[str], sender: str = "ana@shop.example", *, single_from: bool = True, authserv_id: str = OURS) -> bool:
    return verify(fields, sender=sender, single_from=single_from, authserv_id=authserv_id).verified


def test_our_mtas_dmarc_pass_for_the_from_domain_verifies_it():
    assert verified([f"{OURS}; spf=pass smtp.mailfrom=shop.example; dkim=pass header.d=shop.example; dmarc=pass (p=reject) header.from=shop.example"])
    assert verified([f"{OURS.upper()} 1; dmarc=pass header.from=Shop.Example"], sender="ana@shop.example")  # ids and domains ignore case
    assert verified([f"{OURS}; dkim=pass header.d=shop.example", f"{OURS}; dmarc=pass header.from=shop.example"])  # one field per milter


@pytest.mark.parametrize(
    "fields",
    [
        [],
        ["mx.attacker.example; dmarc=pass header.from=shop.example"],  # another authserv-id: anyone can write one
        [f"{OURS}; dmarc=fail header.from=shop.example", f"{OURS}; dmarc=pass header.from=shop.example"],  # a forged pass below ours
        [f"{OURS}; dmarc=pass header.from=other.example"],  # a pass for another domain
        [f"{OURS}; dkim=pass header.d=shop.example; spf=pass smtp.mailfrom=shop.example"],  # no DMARC: no alignment checked
        [f"{OURS}; none"],
        [f"{OURS}; dmarc=pass"],  # which domain passed is not said
        [";;; garbage = ("],
    ],
)
def test_anything_else_leaves_the_from_claimed(fields):
    assert not verified(fields)


def test_two_from_addresses_or_no_configured_authserv_id_verify_nothing():
    field = [f"{OURS}; dmarc=pass header.from=shop.example"]
    assert not verified(field, single_from=False)
    assert not verified(field, authserv_id="")


def test_the_parser_keeps_every_field_top_first_and_sees_a_second_from():
    from crewdesk.intake.email.parse import parse_email

    def parse(headers: str):
        raw = f"{headers}To: support@crewdesk.example\r\nSubject: Hi\r\nMessage-ID: <m1@shop.example>\r\n\r\nWhere is my order?\r\n".encode()
        return parse_email(raw, own_addresses=frozenset(), max_attachment_bytes=1000, allowed_types=[])

    one = parse(
        f"Authentication-Results: {OURS};\r\n dmarc=pass header.from=shop.example\r\nAuthentication-Results: x.example; none\r\nFrom: ana@shop.example\r\n"
    )
    assert one.authentication_results == [f"{OURS}; dmarc=pass header.from=shop.example", "x.example; none"] and one.single_from
    assert not parse("From: ana@shop.example\r\nFrom: eve@evil.example\r\n").single_from
    assert not parse("From: ana@shop.example, eve@evil.example\r\n").single_from
