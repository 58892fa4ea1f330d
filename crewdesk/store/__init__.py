"""The built-in system of record: the tau2-bench retail store (users, orders, products) in our database."""
