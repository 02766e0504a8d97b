"""Protocols in: each turns its wire format into the canonical chat request and renders the answer back.

Chat completions is the canonical protocol itself, so its module only renders the stream; the
others (Anthropic Messages, OpenAI Responses) translate both ways. All of them share one
gateway behind: authentication, admission, routing, settlement and statistics (chat/service.py).
gateway/toolkit.py, below every layer, holds what translating to and from Anthropic-style protocols
takes, once, for these ingress translators and for the provider adapters out.
"""
