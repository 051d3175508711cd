"""What recording costs the event loop: one caller frame plus one agent frame, per 20 ms.

    .venv/bin/python bench/recording_bench.py [--minutes 30]

Feeds a `CallRecorder` a whole call's frames as fast as it takes them and times each pair of
pushes. The median is the interleaving; the tail is the chunk write (about every 2 s of audio
at 8 kHz) to the page cache. Also prints `close()`.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from phonebooth.voice.recording import CallRecorder


def run(rate: int, minutes: float, directory: Path) -> None:
    samples = rate // 50
    caller = (np.arange(samples) % 2000).astype("<i2").tobytes()
    agent = (-(np.arange(samples) % 2000)).astype("<i2").tobytes()
    pairs = int(minutes * 60 * 50)
    recorder = CallRecorder(directory / f"{rate}.wav", sample_rate=rate)
    timings = np.empty(pairs, dtype=np.int64)
    clock = time.perf_counter_ns
    for i in range(pairs):
        start = clock()
        recorder.caller(caller)
        recorder.agent(agent)
        timings[i] = clock() - start
    start = clock()
    recorder.close()
    closing = (clock() - start) / 1e3
    us = timings / 1e3
    print(
        f"{rate:>6} Hz  per push p50 {np.percentile(us, 50) / 2:6.2f} us  mean {us.mean() / 2:6.2f}"
        f"  pair p99 {np.percentile(us, 99):7.1f} us  p99.9 {np.percentile(us, 99.9):7.1f} us"
        f"  close {closing:7.1f} us  file {recorder.path.stat().st_size / 1e6:6.1f} MB"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=30.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        for rate in (8000, 16000, 48000):
            run(rate, args.minutes, Path(directory))


if __name__ == "__main__":
    main()
