"""Append-only audit trail: one row per LLM call, tool call and crew lifecycle event."""
