"""crewdesk: agentic customer-support worker service (core package)."""

__version__ = "0.1.0"
