"""Cut streamed model text into sentences, so speech starts before the reply is complete."""

from __future__ import annotations

import re

__all__ = ["SentenceSplitter"]

# A sentence ends at . ! ? (or a line break) followed by white space; a decimal point or an
# abbreviation's dot is rarely followed by a space *and* a capital, so that is required too.
_END = re.compile(r"([.!?…]+[\"')\]]*)\s+(?=[A-Z0-9\"'(¿¡])|\n+")
_SOFT_LIMIT = 160  # a run-on clause is cut at a comma past this many characters
_FIRST_CLAUSE = 5  # the first piece of a reply may end at a comma once this long


class SentenceSplitter:
    """Feed text deltas; get whole sentences back as soon as they are certain."""

    def __init__(self) -> None:
        self._buffer = ""
        self._pieces = 0

    def feed(self, delta: str) -> list[str]:
        """Whole sentences, and, for the first piece of a reply, a leading clause: the caller
        hears "Of course," while the rest of the sentence is still being synthesized."""
        self._buffer += delta
        sentences: list[str] = []
        if self._pieces == 0:
            comma = self._buffer.find(", ", _FIRST_CLAUSE)
            sentence_end = _END.search(self._buffer)
            if comma != -1 and (sentence_end is None or comma < sentence_end.start()):
                sentences.append(self._buffer[: comma + 1].strip())
                self._buffer = self._buffer[comma + 2 :]
        while True:
            match = _END.search(self._buffer)
            if match is None:
                break
            sentence = self._buffer[: match.end(1) if match.group(1) else match.start()]
            self._buffer = self._buffer[match.end() :]
            if sentence.strip():
                sentences.append(sentence.strip())
        if len(self._buffer) > _SOFT_LIMIT:
            cut = self._buffer.rfind(", ", 0, len(self._buffer) - 1)
            if cut > 40:
                sentences.append(self._buffer[: cut + 1].strip())
                self._buffer = self._buffer[cut + 2 :]
        self._pieces += len(sentences)
        return sentences

    def flush(self) -> list[str]:
        """The rest of the reply; the next text starts a new reply."""
        rest, self._buffer = self._buffer.strip(), ""
        self._pieces = 0
        return [rest] if rest else []
