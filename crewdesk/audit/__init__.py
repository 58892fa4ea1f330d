"""Append-only audit trail: model calls, tool calls, gate decisions, approvals, status changes and replies, hash-chained
per ticket, each chain sealed into one global log at the end of every run."""
