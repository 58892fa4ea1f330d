"""Delivery: hand our replies and notes to the channel each ticket came from."""
