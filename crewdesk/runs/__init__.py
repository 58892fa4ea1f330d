"""Crew runs: one row per attempt to process a ticket, with models, tokens, cost and latency."""
