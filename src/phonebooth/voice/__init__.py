"""The audio pipeline: codecs, resampling, VAD, endpointing, STT, TTS, mixing, recording."""
