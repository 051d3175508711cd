"""The conversation: turn loop, language model streaming, tool runner, transcript."""
