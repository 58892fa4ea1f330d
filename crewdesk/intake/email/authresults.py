"""Whether our own MTA vouches for an inbound mail's From: a DMARC pass for the From's domain in the
Authentication-Results header fields (RFC 8601) that carry our MTA's authserv-id.

A From header is what the sender typed. DMARC (RFC 7489) is what makes it mean something: the MTA checked that the
mail was sent by someone the From domain authorises (SPF or DKIM) and that the authorised domain aligns with the From
domain, and records `dmarc=pass header.from=<domain>` in an Authentication-Results field that starts with its own
authserv-id. Only those fields count here:

- a field with any other authserv-id is ignored: anyone can write one (RFC 8601 section 5: a receiver trusts only the
  fields its own border MTA added, and that MTA removes any that arrive with its id already on them);
- every DMARC result of our authserv-id must be `pass` and name the From's domain (case-insensitive): a forged `pass`
  below our MTA's own `fail` does not count, nor does a pass for another domain;
- the mail has one From header with one address: DMARC reads one domain, and a second address is an unchecked one.

Parsing is authres (the RFC 8601 parser that dkimpy and authheaders use); a field it cannot parse counts as nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import authres

MAX_FIELDS = 20  # read from the top (the MTA nearest us prepends its fields); a mail with hundreds is not ours to sort


@dataclass(frozen=True)
class SenderProof:
    verified: bool
    detail: str  # why, in a few words, for the message's record and the audit trail

    def as_meta(self, authserv_id: str) -> dict:
        return {
            "proof": "verified" if self.verified else "claimed",
            "by": "dmarc" if self.verified else "from",
            "authserv_id": authserv_id,
            "detail": self.detail,
        }


def verify(fields: list[str], *, sender: str, single_from: bool, authserv_id: str) -> SenderProof:
    """`fields`: the mail's Authentication-Results values (unfolded, without the field name), top first."""
    ours = authserv_id.strip().lower()
    if not ours:
        return SenderProof(False, "no authserv-id configured (CREWDESK_EMAIL_AUTHSERV_ID): no From is verified")
    domain = sender.rpartition("@")[2].strip().lower()
    if not domain or not single_from:
        return SenderProof(False, "not exactly one From address")
    results: list[tuple[str, str]] = []
    for value in fields[:MAX_FIELDS]:
        try:
            header = authres.parse_value(value)
        except Exception:  # noqa: BLE001, S112 - authres raises its own SyntaxError and others on hostile input: not ours
            continue
        if str(header.authserv_id or "").strip().lower() != ours:
            continue
        for result in header.results:
            if str(result.method).lower() == "dmarc":
                header_from = next((str(p.value) for p in result.properties if p.type == "header" and p.name == "from"), "")
                results.append((str(result.result).lower(), header_from.strip().lower()))
    if not results:
        return SenderProof(False, f"no DMARC result from {ours}")
    if all(outcome == "pass" and header_from == domain for outcome, header_from in results):
        return SenderProof(True, f"dmarc=pass header.from={domain} by {ours}")
    outcome, header_from = next((o, h) for o, h in results if not (o == "pass" and h == domain))
    return SenderProof(False, f"dmarc={outcome} header.from={header_from or '?'} by {ours}, From domain {domain}")
