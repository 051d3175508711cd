"""Transports that carry calls: the simulated carrier (browser, Twilio and SIP to come)."""
