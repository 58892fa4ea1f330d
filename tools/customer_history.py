"""customer_history: the current customer's earlier tickets and how they ended (read-only)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from crewdesk.tickets import service as tickets
from tools.base import GovernedTool


class _NoArgs(BaseModel):
    pass


class CustomerHistoryTool(GovernedTool):
    name: str = "customer_history"
    description: str = "List this customer's earlier support tickets (date, subject, category, outcome). Takes no arguments."
    args_schema: type[BaseModel] = _NoArgs

    def execute(self, **kwargs: Any) -> str:
        self.gate.check(role=self.role, tool=self.name, arguments=kwargs)
        with self.gate.session_factory() as db:
            earlier = tickets.customer_history(db=db, customer=self.customer, exclude_ticket_id=self.gate.ticket_id)
        if not earlier:
            return "No earlier tickets from this customer."
        lines = [f"- {t.created_at:%Y-%m-%d} #{t.id} [{t.category or 'uncategorised'}] {t.subject[:80]!r} -> {t.status}" for t in earlier]
        return self.gate.vault.conceal("Earlier tickets:\n" + "\n".join(lines))
