"""Render the packaged call-centre ambience: `python scripts/make_ambience.py [PATH]`.

The WAV is committed (so a call never pays for rendering it); rerun this after changing
`phonebooth.voice.ambience` and commit the new file.
"""

from __future__ import annotations

import sys
import wave
from pathlib import Path

from phonebooth.voice.ambience import CALL_CENTER_FILE, generate_call_center
from phonebooth.voice.frames import array_to_pcm, dbfs

SAMPLE_RATE = 16000
SECONDS = 40.0
DEFAULT_PATH = (
    Path(__file__).resolve().parent.parent / "src" / "phonebooth" / "voice" / "data"
) / CALL_CENTER_FILE


def main(argv: list[str]) -> int:
    path = Path(argv[1]) if len(argv) > 1 else DEFAULT_PATH
    samples = generate_call_center(seconds=SECONDS, sample_rate=SAMPLE_RATE)
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(SAMPLE_RATE)
        wav.writeframes(array_to_pcm(samples))
    size_kb = path.stat().st_size // 1024
    print(f"{path}: {SECONDS:.0f} s at {SAMPLE_RATE} Hz, {dbfs(samples):.1f} dBFS, {size_kb} KiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
