"""Write and read audit events. Rows are only ever inserted; each ticket's rows form their own hash chain, and every
finished run seals its chain's head into one global, hash-chained log."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Select, and_, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from crewdesk.audit.chain import GENESIS, HASHED_FIELDS, SEAL_FIELDS, SYSTEM_CHAIN, chain_of, row_hash, seal_hash
from crewdesk.audit.models import AuditChain, AuditEvent, AuditSeal, AuditSealHead
from crewdesk.db import utcnow

MAX_FIELD_CHARS = 40_000


def _bounded(value: Any) -> Any:
    """Keep JSON-able and bounded; a huge prompt is cut, not dropped."""
    if value is None:
        return None
    try:
        text = json.dumps(value, default=str)
    except (TypeError, ValueError):
        text = json.dumps(str(value))
    if len(text) <= MAX_FIELD_CHARS:
        return json.loads(text)
    return {"truncated": True, "chars": len(text), "head": text[:MAX_FIELD_CHARS]}


def _advance(db: Session, chain: int) -> tuple[str, int]:
    """Count one more row on `chain` and return (its previous last hash, the new row's seq). The UPDATE locks that
    chain's row only (until the caller commits), so appends to one ticket form one chain while other tickets go on."""
    bump = update(AuditChain).where(AuditChain.chain == chain).values(count=AuditChain.count + 1).returning(AuditChain.last_hash, AuditChain.count)
    row = db.execute(bump).first()
    if row is None:  # the chain's first row: create its head (two first rows at once: one insert wins, both then bump)
        insert = pg_insert if db.get_bind().dialect.name == "postgresql" else sqlite_insert
        db.execute(insert(AuditChain).values(chain=chain, last_hash=GENESIS, count=0).on_conflict_do_nothing())
        row = db.execute(bump).one()
    return row[0], row[1]


def record(
    *,
    db: Session,
    kind: str,
    name: str,
    ticket_id: int | None = None,
    run_id: int | None = None,
    actor: str = "",
    arguments: Any = None,
    result: Any = None,
    duration_ms: float | None = None,
    error: str | None = None,
    at: datetime | None = None,
) -> AuditEvent:
    chain = chain_of(ticket_id)
    prev_hash, seq = _advance(db, chain)
    fields = dict(
        ticket_id=ticket_id,
        run_id=run_id,
        seq=seq,
        kind=kind,
        name=name[:128],
        actor=(actor or "")[:128],
        arguments=_bounded(arguments),
        result=_bounded(result),
        duration_ms=duration_ms,
        error=error,
        created_at=at or utcnow(),
    )
    digest = row_hash(prev_hash, fields)
    event = AuditEvent(**fields, chain=chain, prev_hash=prev_hash, hash=digest)
    db.add(event)
    db.execute(update(AuditChain).where(AuditChain.chain == chain).values(last_hash=digest))
    return event


def seal(*, db: Session, ticket_id: int | None, run_id: int | None) -> AuditSeal | None:
    """Write the chain's head (row count and last hash) into the global seal log, at the end of a run. Call it in the
    transaction that writes the run's last row: that row's chain lock is then already held."""
    chain = chain_of(ticket_id)
    head = db.execute(select(AuditChain.count, AuditChain.last_hash).where(AuditChain.chain == chain)).first()
    if head is None:
        return None
    prev = db.execute(update(AuditSealHead).where(AuditSealHead.id == 1).values(count=AuditSealHead.count + 1).returning(AuditSealHead.last_hash)).scalar_one()
    fields = dict(chain=chain, run_id=run_id, count=head[0], chain_hash=head[1], created_at=utcnow())
    digest = seal_hash(prev, fields)
    sealed = AuditSeal(**fields, prev_hash=prev, hash=digest)
    db.add(sealed)
    db.execute(update(AuditSealHead).where(AuditSealHead.id == 1).values(last_hash=digest))
    return sealed


@dataclass
class ChainReport:
    checked: int = 0
    chains: int = 0
    seals: int = 0
    unsealed: int = 0  # rows after their chain's last seal: protected by their chain and its head only
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _chain_name(chain: int) -> str:
    return "system chain" if chain == SYSTEM_CHAIN else f"ticket {chain}"


def _keyset(db: Session, stmt: Select, keys: tuple, batch: int) -> Iterator[Any]:
    """Stream rows of `stmt` ordered by `keys`, `batch` at a time (bounded memory on a big trail)."""
    last = None
    while True:
        page = stmt.order_by(*keys).limit(batch)
        if last is not None:
            page = page.where(tuple_(*keys) > tuple_(*last))
        rows = db.execute(page).all()
        if not rows:
            return
        yield from rows
        last = tuple(getattr(rows[-1], k.key) for k in keys)
        db.expunge_all()


def verify(*, db: Session, batch: int = 2000) -> ChainReport:
    """Recompute every chain and the seal log. An edited row breaks its own hash, a deleted one its successor's link
    (or its chain's head count), a chain deleted whole (rows and head) the seal that sealed it, and a deleted seal the
    next seal's link or the seal head."""
    report = ChainReport()
    heads = _keyset(db, select(AuditChain.chain, AuditChain.last_hash, AuditChain.count), (AuditChain.chain,), batch)
    head = next(heads, None)

    def close(chain: int, last_hash: str, count: int) -> None:
        nonlocal head
        while head is not None and head.chain < chain:
            report.problems.append(f"{_chain_name(head.chain)}: its head counts {head.count} rows, none were found (rows deleted)")
            head = next(heads, None)
        if head is None or head.chain != chain:
            report.problems.append(f"{_chain_name(chain)}: {count} rows but no chain head (head deleted)")
            return
        if head.last_hash != last_hash:
            report.problems.append(
                f"{_chain_name(chain)}: the last row hashes to {last_hash[:12]}, its head says {head.last_hash[:12]} (rows removed from the end)"
            )
        if head.count != count:
            report.problems.append(f"{_chain_name(chain)}: {count} rows found, its head counted {head.count}")
        head = next(heads, None)

    columns = [
        AuditEvent.id,
        AuditEvent.chain,
        AuditEvent.prev_hash,
        AuditEvent.hash,
        *[getattr(AuditEvent, k) for k in HASHED_FIELDS if k != "seq"],
        AuditEvent.seq,
    ]
    current, expected_prev, count = None, GENESIS, 0
    for row in _keyset(db, select(*columns), (AuditEvent.chain, AuditEvent.seq), batch):
        if row.chain != current:
            if current is not None:
                close(current, expected_prev, count)
            current, expected_prev, count = row.chain, GENESIS, 0
            report.chains += 1
        where = f"{_chain_name(row.chain)} row {row.seq} (id {row.id})"
        if row.seq != count + 1:
            report.problems.append(f"{where}: follows row {count} (rows {count + 1}..{row.seq - 1} deleted)")
        if row.prev_hash != expected_prev:
            report.problems.append(
                f"{where}: links to {row.prev_hash[:12]}, but the row before it hashes to {expected_prev[:12]} (a row was deleted or inserted)"
            )
        if row_hash(row.prev_hash, {k: getattr(row, k) for k in HASHED_FIELDS}) != row.hash:
            report.problems.append(f"{where}: content does not match its hash (edited)")
        expected_prev, count = row.hash, row.seq
        report.checked += 1
    if current is not None:
        close(current, expected_prev, count)
    while head is not None:
        report.problems.append(f"{_chain_name(head.chain)}: its head counts {head.count} rows, none were found (rows deleted)")
        head = next(heads, None)

    sealed_upto: dict[int, int] = {}
    expected_prev = GENESIS
    joined = select(
        AuditSeal.id, AuditSeal.prev_hash, AuditSeal.hash, *[getattr(AuditSeal, k) for k in SEAL_FIELDS], AuditEvent.hash.label("row_hash")
    ).outerjoin(AuditEvent, and_(AuditEvent.chain == AuditSeal.chain, AuditEvent.seq == AuditSeal.count))
    for seal_row in _keyset(db, joined, (AuditSeal.id,), batch):
        where = f"seal {seal_row.id} ({_chain_name(seal_row.chain)}, {seal_row.count} rows)"
        if seal_row.prev_hash != expected_prev:
            report.problems.append(
                f"{where}: links to {seal_row.prev_hash[:12]}, but the seal before it hashes to {expected_prev[:12]} (a seal was deleted or inserted)"
            )
        if seal_hash(seal_row.prev_hash, {k: getattr(seal_row, k) for k in SEAL_FIELDS}) != seal_row.hash:
            report.problems.append(f"{where}: content does not match its hash (edited)")
        if seal_row.count and seal_row.row_hash is None:
            report.problems.append(f"{where}: the chain has no row {seal_row.count} any more (the sealed chain was deleted or cut)")
        elif seal_row.count and seal_row.row_hash != seal_row.chain_hash:
            report.problems.append(
                f"{where}: row {seal_row.count} hashes to {seal_row.row_hash[:12]}, the seal says {seal_row.chain_hash[:12]} (the chain was rewritten)"
            )
        sealed_upto[seal_row.chain] = max(sealed_upto.get(seal_row.chain, 0), seal_row.count)
        expected_prev = seal_row.hash
        report.seals += 1
    seal_head = db.get(AuditSealHead, 1)
    if seal_head is None:
        report.problems.append("audit_seal_head is missing")
    else:
        if seal_head.last_hash != expected_prev:
            report.problems.append(f"the last seal hashes to {expected_prev[:12]}, the seal head says {seal_head.last_hash[:12]} (seals removed from the end)")
        if seal_head.count != report.seals:
            report.problems.append(f"{report.seals} seals found, the seal head counted {seal_head.count}")
    total_sealed = sum(sealed_upto.values())
    report.unsealed = max(0, report.checked - total_sealed)
    return report


def verify_ticket(*, db: Session, ticket_id: int) -> ChainReport:
    """One ticket's chain, for a page that shows its trail: each row's hash and link, the chain's head, and each of its
    seals' own hash and the row it sealed. (The links between seals of different tickets are verify()'s, over the whole
    log.)"""
    report = ChainReport(chains=1)
    hashes: dict[int, str] = {}
    expected_prev, count = GENESIS, 0
    for row in db.execute(select(AuditEvent).where(AuditEvent.chain == ticket_id).order_by(AuditEvent.seq)).scalars():
        where = f"ticket {ticket_id} row {row.seq}"
        if row.seq != count + 1:
            report.problems.append(f"{where}: follows row {count} (rows {count + 1}..{row.seq - 1} deleted)")
        if row.prev_hash != expected_prev:
            report.problems.append(f"{where}: does not link to the row before it (a row was deleted or inserted)")
        if row_hash(row.prev_hash, {k: getattr(row, k) for k in HASHED_FIELDS}) != row.hash:
            report.problems.append(f"{where}: content does not match its hash (edited)")
        hashes[row.seq] = row.hash
        expected_prev, count = row.hash, row.seq
        report.checked += 1
    head = db.get(AuditChain, ticket_id)
    if head is None:
        if count:
            report.problems.append(f"ticket {ticket_id}: {count} rows but no chain head (head deleted)")
    elif head.count != count or head.last_hash != expected_prev:
        report.problems.append(f"ticket {ticket_id}: its head counts {head.count} rows, {count} found (rows removed from the end)")
    sealed = 0
    for seal in db.execute(select(AuditSeal).where(AuditSeal.chain == ticket_id).order_by(AuditSeal.id)).scalars():
        report.seals += 1
        if seal_hash(seal.prev_hash, {k: getattr(seal, k) for k in SEAL_FIELDS}) != seal.hash:
            report.problems.append(f"seal {seal.id} of ticket {ticket_id}: content does not match its hash (edited)")
        if seal.count and hashes.get(seal.count) != seal.chain_hash:
            report.problems.append(f"seal {seal.id} of ticket {ticket_id}: row {seal.count} is not the row it sealed (the chain was rewritten)")
        sealed = max(sealed, seal.count)
    report.unsealed = max(0, count - sealed)
    return report


def trail(*, db: Session, ticket_id: int) -> list[AuditEvent]:
    return list(db.execute(select(AuditEvent).where(AuditEvent.chain == ticket_id).order_by(AuditEvent.seq)).scalars())
