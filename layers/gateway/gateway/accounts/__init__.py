"""Accounts: API keys, plans, credits and limits."""
