"""Routing: a ticket's intents, category, priority and sentiment, from one constrained model call or from an
embedding classifier over labelled examples (the model only breaking ties). See README.md for the designs and figures."""

from crewdesk.routing.schemas import CATEGORY_OF, Category, Intent, Priority, Route, Sentiment

__all__ = ["CATEGORY_OF", "Category", "Intent", "Priority", "Route", "Sentiment"]
