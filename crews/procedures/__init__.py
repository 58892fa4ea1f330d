"""Procedures: the known intents carried out as CrewAI Flows with typed state, declared in tasks/procedures/*.yaml."""
