"""Intake parsers: turn channel input into TicketIn or a clear rejection."""
