"""Long-term memory: the knowledge base (KB chunks) and what we remember about customers, behind one store interface."""
