"""CrewAI tools over the connectors; every call goes through tools.gate.Gate."""
