"""Providers: one adapter per wire protocol; a provider is a catalog entry that names its protocol."""
