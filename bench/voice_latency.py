"""Voice turn latency per product tier: the caller stops talking -> the agent's voice arrives.

    .venv/bin/python bench/voice_latency.py [--turns 10] [--turns-per-call 5]
        [--tiers spark,bolt,zap] [-v]

Starts a scripted OpenAI-compatible model (its own process; every answer is one sentence,
streamed word by word at once) and its own `phonebooth serve` pointed at it, with the real
offline engines (silero VAD, faster-whisper tiny.en, piper). Audio calls go over the
simulated carrier (`"audio": true`), one at a time, with recorded caller lines
(tests/data/caller_book_appointment.wav plus a few spoken by piper at start-up, trimmed so
their last frame is the last speech). Each turn waits until the agent's reply has finished
playing before the caller speaks again.

Per turn the client measures end to end: from sending the caller's last speech frame to the
arrival of the first agent frame that is not digital silence (no background track, so the
agent's side is exact silence between utterances). The server's per-turn `latency` object
(from the `ended` call) gives the parts. Printed per tier, p50 and p95 (nearest rank; with
10 turns p95 is the largest but one):

  end to end (client)  = the figure a caller lives with
  server e2e           = `end_of_speech_to_first_audio_ms`: from the end of the last frame the
                         server's VAD called speech to the first agent frame leaving the speaker
  endpointing/stt/llm first token/tts first audio = the server's parts
  overhead             = client end to end - (tier silence + stt + llm first token + tts first
                         audio): VAD hang-over past the words, turn hand-offs, sentence
                         splitting, pacing to the next 20 ms tick, encoding and transport
  server gap           = server e2e - (endpointing + stt + llm + tts): hand-offs inside the
                         server only; client - server = VAD hang-over + transport

Nothing here asserts timing: it prints figures (goal: spark p50 < 1.0 s, overhead < 20 ms).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _voice import (
    REPO,
    AudioCaller,
    Utterance,
    add_line,
    load_wav,
    pct,
    piper_utterances,
    scripted_llm,
    voice_server,
)

TIERS = {"spark": "+15555550201", "bolt": "+15555550202", "zap": "+15555550203"}
DEFAULT_SILENCE = {"spark": 400, "bolt": 600, "zap": 900}
REPLY = "Of course, we have an opening at nine tomorrow morning."
CALLER_LINES = [
    "What time do you open on Saturday?",
    "Can I move my cleaning to next Tuesday afternoon?",
    "Yes, that works for me, thank you.",
]
PARTS = ["endpointing_ms", "stt_ms", "llm_first_token_ms", "tts_first_audio_ms"]


@dataclass
class Turn:
    tier: str
    utterance: str
    client_ms: float  # last caller speech frame sent -> first agent audio frame received
    text_ms: float | None  # ... -> first agent_text received
    server: dict[str, float | None]
    heard_as: str = ""


async def one_call(
    ws_url: str, tier: str, lines: list[Utterance], first: int, turns: int
) -> list[Turn]:
    caller, tasks = await AudioCaller.dial(ws_url, TIERS[tier])
    measured: list[tuple[str, float, float | None]] = []
    try:
        await caller.wait_for("setup", timeout=120)  # the first audio call warms the engines
        await caller.wait_for("agent_turn_end", timeout=120)
        await caller.wait_quiet()
        for n in range(turns):
            utterance = lines[(first + n) % len(lines)]
            ends_before = caller.count("agent_turn_end")
            caller.speak(utterance)
            while caller.last_speech_sent is None:
                await asyncio.sleep(0.005)
            spoke = caller.last_speech_sent
            heard = await caller.first_audio_after(spoke)
            text_at = next((t for t in caller.texts if t > spoke), None)
            await caller.wait_for("agent_turn_end", ends_before + 1)
            await caller.wait_quiet()
            text_ms = None if text_at is None else (text_at - spoke) * 1000
            measured.append((utterance.name, (heard - spoke) * 1000, text_ms))
        ended = await caller.hangup()
    finally:
        for task in tasks:
            task.cancel()
        await caller.ws.close()
    server_turns = ended["latency"]["turns"]
    users = [r["content"] for r in ended["transcripts"] if r["role"] == "user"]
    if len(server_turns) != len(measured):
        print(
            f"  ! {tier}: the server reported {len(server_turns)} turns for "
            f"{len(measured)} spoken lines; this call is left out",
            file=sys.stderr,
        )
        return []
    return [
        Turn(tier, name, client, text, server, users[i] if i < len(users) else "")
        for i, ((name, client, text), server) in enumerate(zip(measured, server_turns, strict=True))
    ]


def _values(turns: list[Turn], key: str) -> list[float]:
    return [v for t in turns if (v := t.server.get(key)) is not None]


def _fmt(values: list[float]) -> str:
    if not values:
        return "      -      "
    return f"{pct(values, 0.5):6.0f} {pct(values, 0.95):6.0f}"


def report(tier: str, silence: int, turns: list[Turn], verbose: bool) -> None:
    overhead = []
    gap = []
    client_minus_server = []
    for t in turns:
        parts = [t.server.get(k) for k in PARTS[1:]]
        if all(p is not None for p in parts):
            overhead.append(t.client_ms - silence - sum(p for p in parts if p is not None))
        full = [t.server.get(k) for k in PARTS]
        total = t.server.get("end_of_speech_to_first_audio_ms")
        if total is not None and all(p is not None for p in full):
            gap.append(total - sum(p for p in full if p is not None))
            client_minus_server.append(t.client_ms - total)
    client = [t.client_ms for t in turns]
    texts = [t.text_ms for t in turns if t.text_ms is not None]
    row = [
        f"{tier:5s} {silence:4d} ms {len(turns):3d}",
        _fmt(client),
        _fmt(_values(turns, "end_of_speech_to_first_audio_ms")),
        *(_fmt(_values(turns, key)) for key in PARTS),
        _fmt(texts),
        _fmt(overhead),
        _fmt(gap),
        _fmt(client_minus_server),
    ]
    print(" | ".join(row))
    if verbose:
        for t in turns:
            parts = " ".join(f"{k.removesuffix('_ms')}={t.server.get(k)}" for k in PARTS)
            total = t.server.get("end_of_speech_to_first_audio_ms")
            print(
                f"      {t.client_ms:6.0f} ms  server {total}  {parts}"
                f"  said {t.utterance!r} heard {t.heard_as!r}"
            )


async def run(
    base: str, tiers: list[str], turns: int, per_call: int, reply: str, verbose: bool
) -> None:
    silences = {
        tier: int(os.environ.get(f"PHONEBOOTH_SILENCE_MS_{tier.upper()}", DEFAULT_SILENCE[tier]))
        for tier in tiers
    }
    for tier in tiers:
        await add_line(
            base, TIERS[tier], product=tier, first_message="Thanks for calling Bright Smile Dental."
        )
    ws_url = "ws" + base.removeprefix("http") + "/v1/sim/call"
    lines = [load_wav(REPO / "tests" / "data" / "caller_book_appointment.wav")]
    lines += await piper_utterances(CALLER_LINES)
    print(
        "caller lines: "
        + ", ".join(f"{u.name[:28]!r} {u.seconds:.1f} s" for u in lines)
        + f"\nagent reply (every turn): {reply!r}"
    )
    started = time.monotonic()
    await one_call(ws_url, tiers[0], lines, 0, 2)  # warm-up: engines load, first whisper run
    print(f"warm-up call: {time.monotonic() - started:.1f} s (not counted)\n")
    header = [
        "tier  silence turns",
        "client e2e   ",
        "server e2e   ",
        "endpointing  ",
        "stt          ",
        "llm 1st tok  ",
        "tts 1st audio",
        "1st text     ",
        "overhead     ",
        "server gap   ",
        "client-server",
    ]
    print("all figures in ms, each column p50 p95")
    print(" | ".join(header))
    all_overhead: dict[str, list[Turn]] = {}
    for tier in tiers:
        done: list[Turn] = []
        calls = math.ceil(turns / per_call)
        for call in range(calls):
            count = min(per_call, turns - call * per_call)
            done += await one_call(ws_url, tier, lines, call * per_call, count)
        all_overhead[tier] = done
        report(tier, silences[tier], done, verbose)
    spark = all_overhead.get("spark")
    if spark:
        p50 = pct([t.client_ms for t in spark], 0.5)
        print(f"\nspark client end to end p50 {p50:.0f} ms (goal < 1000 ms)")
    load = os.getloadavg()
    print(f"load average during the run: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=10, help="measured turns per tier")
    parser.add_argument("--turns-per-call", type=int, default=5)
    parser.add_argument("--tiers", default="spark,bolt,zap")
    parser.add_argument("--reply", default=REPLY)
    parser.add_argument("-v", "--verbose", action="store_true", help="print every turn")
    parser.add_argument(
        "--nice",
        type=int,
        default=0,
        help="niceness for the server (e.g. -10, as root) on a machine shared with other work",
    )
    args = parser.parse_args()
    tiers = [t for t in args.tiers.split(",") if t]
    with scripted_llm(args.reply) as llm_url:
        env = {"PHONEBOOTH_LLM_PROVIDER": "openai", "PHONEBOOTH_LLM_BASE_URL": llm_url}
        with voice_server(env, nice=args.nice) as base:
            asyncio.run(run(base, tiers, args.turns, args.turns_per_call, args.reply, args.verbose))


if __name__ == "__main__":
    main()
