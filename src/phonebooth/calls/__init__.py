"""Call setup: number lookup, the call.incoming exchange, fallback, and the live-call registry."""
