"""What one call's 20 ms frame costs the event loop, stage by stage (a companion to
bench/voice_capacity.py that explains its figure).

    .venv/bin/python bench/voice_frame_costs.py [--calls 1,10,50]

Times phonebooth's own per-frame functions in a loop, single-threaded, on real audio: the
caller side (base64 + G.711 decode, VAD, endpointing, recording) and the agent side (mixing
with and without the CALL_CENTER track, G.711 encode + base64 + JSON). The Silero VAD is
timed with `--calls` instances fed in turn, as a server with that many calls feeds them,
because each instance is its own ONNX Runtime session and the cost per window grows with the
number of sessions competing for the CPU caches. The WebSocket and ASGI layers are not here
(bench/voice_capacity.py includes them). Figures are microseconds per 20 ms frame and the
share of one core per call (50 frames in and 50 out a second).
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _voice import REPO, SILENT, load_wav

from phonebooth.voice.ambience import load_call_center
from phonebooth.voice.endpointing import Endpointer
from phonebooth.voice.g711 import ulaw_decode, ulaw_encode
from phonebooth.voice.mixer import BackgroundMixer
from phonebooth.voice.recording import CallRecorder
from phonebooth.voice.vad import VoiceActivity


def per_call(fn: Callable[[int], object], count: int) -> float:
    """Microseconds per call of fn(i), i = 0..count-1, after a short warm-up."""
    for i in range(min(200, count)):
        fn(i)
    started = time.perf_counter()
    for i in range(count):
        fn(i)
    return (time.perf_counter() - started) / count * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", default="1,10,50")
    parser.add_argument("--frames", type=int, default=5000)
    args = parser.parse_args()
    n = args.frames
    speech = load_wav(REPO / "tests" / "data" / "caller_book_appointment.wav")
    frames = list(speech.frames) + [SILENT] * 100
    messages = [
        json.dumps({"type": "media", "payload": base64.b64encode(ulaw_encode(f)).decode()})
        for f in frames
    ]
    pcm = [ulaw_decode(ulaw_encode(f)).tobytes() for f in frames]
    rows: list[tuple[str, float, str]] = []

    def caller_decode(i: int) -> object:
        message = json.loads(messages[i % len(messages)])
        return ulaw_decode(base64.b64decode(message["payload"], validate=True)).tobytes()

    rows.append(("in: JSON + base64 + G.711 decode", per_call(caller_decode, n), "in"))

    clock = [0]
    endpointer = Endpointer(lambda: clock[0], silence_ms=400)
    flags = [bool(i % 7) for i in range(1000)]

    def endpoint(i: int) -> object:
        clock[0] += 20
        return endpointer.feed(flags[i % 1000])

    rows.append(("in: endpointing", per_call(endpoint, n), "in"))

    with tempfile.TemporaryDirectory() as directory:
        recorder = CallRecorder(Path(directory) / "r.wav")

        def record(i: int) -> None:
            recorder.caller(pcm[i % len(pcm)])
            recorder.agent(pcm[(i + 7) % len(pcm)])

        rows.append(("in+out: recording (both pushes)", per_call(record, n), "both"))
        recorder.close()

    track = load_call_center(8000)
    tone = (5000 * np.sin(np.arange(160) * 2 * np.pi * 180 / 8000)).astype(np.int16).tobytes()
    for label, mixer in (
        ("out: mixer, no track", BackgroundMixer(None, sample_rate=8000, target_dbfs=-33)),
        ("out: mixer, CALL_CENTER", BackgroundMixer(track, sample_rate=8000, target_dbfs=-33)),
    ):
        rows.append(
            (f"{label}, silence", per_call(lambda i, m=mixer: m.next_frame(None), n), "out")
        )
        rows.append((f"{label}, speech", per_call(lambda i, m=mixer: m.next_frame(tone), n), "out"))

    mixed = np.frombuffer(tone, dtype=np.int16)

    def agent_encode(i: int) -> str:
        payload = base64.b64encode(ulaw_encode(mixed.tobytes())).decode("ascii")
        return json.dumps({"type": "media", "payload": payload}, separators=(",", ":"))

    rows.append(("out: G.711 encode + base64 + JSON", per_call(agent_encode, n), "out"))

    for calls in [int(c) for c in args.calls.split(",") if c]:
        vads = [VoiceActivity(sample_rate=8000) for _ in range(calls)]

        def vad(i: int, vads: list[VoiceActivity] = vads) -> object:
            return vads[i % len(vads)].feed(pcm[(i // len(vads)) % len(pcm)])

        rows.append((f"in: Silero VAD, {calls} calls' instances", per_call(vad, n), "in"))

    print(f"{'stage':48s} {'us/frame':>9s} {'% core/call':>12s}")
    for label, us, _side in rows:
        per_second = us * 50 * (2 if "both" in _side else 1) / 1e6
        print(f"{label:48s} {us:9.1f} {100 * per_second:11.2f}%")
    print(
        "\n% core/call = us/frame x 50 frames a second (x2 for recording, which takes a frame"
        " of each side); 1 % per call is 100 calls per core."
    )


if __name__ == "__main__":
    main()
