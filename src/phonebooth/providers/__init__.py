"""Pluggable engines behind small interfaces: llm/, stt/, tts/, vad/."""
