"""Outbound requests to customer servers: signing, serialization and the URL policy."""
