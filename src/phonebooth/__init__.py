"""phonebooth: a self-hosted voice-AI phone agent server speaking the ThunderPhone contract."""

__version__ = "0.1.0"
__all__ = ["__version__"]
