"""Crews built per ticket from the YAML in agents/ and tasks/: routing, a specialist, escalation."""
