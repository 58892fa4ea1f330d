"""Plugins behind small interfaces (Dispatch-style): the crew and tools see only crewdesk.connectors.base."""
