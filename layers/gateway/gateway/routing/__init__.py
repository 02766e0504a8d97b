"""Routing: the model catalog and how a requested model becomes a list of upstream candidates."""
