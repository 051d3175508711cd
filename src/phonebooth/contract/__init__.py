"""Pydantic models of the public ThunderPhone wire contract: the single definition."""
