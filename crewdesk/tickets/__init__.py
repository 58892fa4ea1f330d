"""Tickets, their thread of messages, and the status state machine."""
