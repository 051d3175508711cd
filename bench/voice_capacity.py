"""How many real-time audio calls one server process sustains before its frames run late.

    .venv/bin/python bench/voice_capacity.py [--steps 10,25,50,75,100,150,200,250,300]
        [--seconds 20] [--no-background] [--no-record] [--call-seconds S] [--nice -10]
        [--vad silero|shared|energy] [--server-cpu 0] [--client-cpu 1]

On a machine shared with other work (other test runs), `--nice -10` (as root) keeps them
from taking the measured cores; the runq column shows how much they still took.

Two processes, one core each: the server (bench/_voice_capacity_server.py: phonebooth's app
served by uvicorn as `serve` does, with instant fake STT, model and TTS, so the media path
is what is measured: carrier WebSocket, G.711, silero VAD, endpointing, the speaker's 20 ms
pacing, soxr resampling of the 22.05 kHz "TTS" audio, background mixing, a recording per
call, the database rows of each turn) pinned to `--server-cpu`, and this load generator
pinned to `--client-cpu` (a bare WebSocket client with prebuilt frames, so it costs far
less per frame than the server it drives). With 2 cores that is the whole machine, so the
calls per core figure is the step count the server's one core carried.

Each step holds N calls at once. Every caller sends paced 20 ms frames the whole time: the
recorded line tests/data/caller_book_appointment.wav (2.8 s) then 5.2 s of silence, from a
random point of that 8 s cycle; the agent (first message, then a 3 s reply to every line,
with the CALL_CENTER background unless --no-background) sends paced frames back. After a
warm-up the step measures `--seconds`:

  out late %   outgoing frames handed to the WebSocket more than 20 ms after their slot
               on the call's 20 ms schedule (server side; the figure the limit is about)
  out p99/max  that lateness, ms
  in late %    caller frames the server processed more than 20 ms behind their cadence
               (a backlog here delays VAD and end of turn, though nothing goes out late)
  in p99       that lag, ms
  loop p99     the server's event-loop lag (10 ms ticker), ms
  cpu          the server process's CPU time over wall time (1.00 = its whole core)
  cpu/call     that divided by the calls: the share of a core one call costs
  runq         share of wall time the server's event loop sat runnable waiting for its core
               (other processes on the machine took it; 0 on a quiet machine)
  rx late %    agent frames arriving at the generator more than 20 ms behind their
               cadence (includes the generator's own lag; a cross-check)
  gen lag p99  how late the generator's own 20 ms sending tick ran (if this grows, the
               generator, not the server, is the limit)

With --call-seconds S, calls also come and go while measuring (one hangs up and a new one
is set up every S/N seconds), so call setup shares the core as it does in production.

The run stops after the first step with more than 1 % of outgoing frames late (the limit
asked for); it also says the largest step with at most 1 % late in both directions. Nothing is
asserted: it prints figures (goal: at least 100 calls per core).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from _voice import (
    BENCH_KEY,
    REPO,
    SILENT,
    add_line,
    load_wav,
    media_message,
    pct,
    voice_server,
)

NUMBER = "+15555550209"
CYCLE_S = 8.0
LATE_S = 0.020


def client_frame(payload: bytes, opcode: int = 1) -> bytes:
    """One final WebSocket frame from a client, masked with the all-zero key (legal, and the
    payload then goes out unchanged, so every frame can be built once before the run)."""
    size = len(payload)
    if size < 126:
        head = bytes([0x80 | opcode, 0x80 | size])
    elif size < 65536:
        head = bytes([0x80 | opcode, 0x80 | 126]) + size.to_bytes(2, "big")
    else:
        head = bytes([0x80 | opcode, 0x80 | 127]) + size.to_bytes(8, "big")
    return head + bytes(4) + payload


HANGUP = client_frame(b'{"type":"hangup"}')


class Caller(asyncio.Protocol):
    """One call's caller on a bare WebSocket: the generator must cost far less per frame than
    the server it measures, so frames are prebuilt bytes and the receive side only times the
    agent's media frames (and reads the few other messages)."""

    def __init__(self, load: Load, host: str, path: str) -> None:
        self.load = load
        self.request = (
            f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
        self.transport: Any = None  # an asyncio.Transport (uvloop's is not a subclass)
        self.phase = random.randrange(len(load.cycle))  # frame of the cycle sent first
        self.buffer = bytearray()
        self.upgraded = False
        self.partial: bytearray | None = None
        self.arrivals = 0
        self.anchor = float("inf")
        self.late = 0
        self.measured = 0
        self.setup = asyncio.Event()
        self.ended = asyncio.Event()
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.ended.set()

    def send(self, frame: bytes) -> None:
        if not self.closed and self.transport is not None:
            self.transport.write(frame)

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        buffer = self.buffer
        buffer += data
        if not self.upgraded:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            if b" 101 " not in buffer[: buffer.find(b"\r\n")]:
                self.closed = True
                self.ended.set()
                return
            del buffer[: end + 4]
            self.upgraded = True
            self.send(self.load.start_frame)
        while len(buffer) >= 2:
            first, second = buffer[0], buffer[1]
            size = second & 0x7F
            at = 2
            if size == 126:
                if len(buffer) < 4:
                    return
                size, at = int.from_bytes(buffer[2:4], "big"), 4
            elif size == 127:
                if len(buffer) < 10:
                    return
                size, at = int.from_bytes(buffer[2:10], "big"), 10
            if len(buffer) < at + size:
                return
            payload = bytes(buffer[at : at + size])
            del buffer[: at + size]
            self._frame(first & 0x0F, bool(first & 0x80), payload, now)

    def _frame(self, opcode: int, final: bool, payload: bytes, now: float) -> None:
        if opcode == 0x9:  # ping
            self.send(client_frame(payload, 0xA))
            return
        if opcode == 0x8:  # close
            self.send(client_frame(payload[:2], 0x8))
            self.closed = True
            self.ended.set()
            return
        if opcode in (0x1, 0x2) and not final:
            self.partial = bytearray(payload)
            return
        if opcode == 0x0 and self.partial is not None:
            self.partial += payload
            if not final:
                return
            payload, self.partial = bytes(self.partial), None
        elif opcode not in (0x1, 0x2):
            return
        if payload.startswith(b'{"type":"media"'):
            slot = now - self.arrivals * 0.02
            self.arrivals += 1
            if slot < self.anchor:
                self.anchor = slot
            elif self.load.measuring:
                self.late += slot - self.anchor > LATE_S
            self.measured += self.load.measuring
            return
        kind = json.loads(payload)["type"]
        if kind == "setup":
            self.setup.set()
        elif kind == "ended":
            self.closed = True
            self.ended.set()
            if self.transport is not None:
                self.transport.close()


class Load:
    """N callers, one pacing task for all of them."""

    def __init__(self, base: str, cycle: list[str]) -> None:
        self.host = base.removeprefix("http://")
        self.cycle = [client_frame(message.encode()) for message in cycle]
        start = {
            "type": "start",
            "api_key": BENCH_KEY,
            "to_number": NUMBER,
            "from_number": "+15555550100",
            "audio": True,
        }
        self.start_frame = client_frame(json.dumps(start).encode())
        self.callers: list[Caller] = []
        self.pacing_lag: list[float] = []
        self.measuring = False
        self.churned = 0
        self._pacer: asyncio.Task[None] | None = None

    async def _dial_one(self) -> None:
        host, port = self.host.rsplit(":", 1)
        loop = asyncio.get_running_loop()
        _, caller = await loop.create_connection(
            lambda: Caller(self, self.host, "/v1/sim/call"), host, int(port)
        )
        self.callers.append(caller)
        await asyncio.wait_for(caller.setup.wait(), 60)

    async def dial(self, count: int) -> None:
        if self._pacer is None:
            self._pacer = asyncio.create_task(self._pace())
        for first in range(0, count, 10):  # ten at a time: a setup storm is another benchmark
            await asyncio.gather(*(self._dial_one() for _ in range(min(10, count - first))))

    async def churn(self, every: float) -> None:
        """Every `every` seconds one caller hangs up and a new call comes in (calls of
        N x `every` seconds on average), so call setup and teardown share the core."""
        while True:
            await asyncio.sleep(every)
            live = [c for c in self.callers if not c.closed]
            if live:
                random.choice(live).send(HANGUP)
            self.churned += 1
            await self._dial_one()

    async def _pace(self) -> None:
        start = time.monotonic()
        tick = 0
        cycle = self.cycle
        size = len(cycle)
        while True:
            self.pacing_lag.append((time.monotonic() - (start + tick * 0.02)) * 1000)
            for caller in self.callers:
                if caller.upgraded:
                    caller.send(cycle[(caller.phase + tick) % size])
            tick += 1
            await asyncio.sleep(max(0.0, start + tick * 0.02 - time.monotonic()))

    def start_measuring(self) -> None:
        for caller in self.callers:
            caller.late = caller.measured = 0
        self.pacing_lag.clear()
        self.measuring = True

    def client_figures(self) -> tuple[int, int, float]:
        late = sum(c.late for c in self.callers)
        frames = sum(c.measured for c in self.callers)
        return late, frames, pct(self.pacing_lag, 0.99)

    async def hang_up_all(self) -> None:
        self.measuring = False
        for caller in self.callers:
            caller.send(HANGUP)
        waits = [asyncio.create_task(c.ended.wait()) for c in self.callers]
        if waits:
            await asyncio.wait(waits, timeout=60)
        for caller in self.callers:
            if caller.transport is not None:
                caller.transport.close()
        if self._pacer is not None:
            self._pacer.cancel()
            self._pacer = None
        self.callers.clear()


async def stats(base: str, reset: bool = False) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.get(base + "/bench/stats" + ("?reset=1" if reset else ""))
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result


async def run(
    base: str,
    steps: list[int],
    seconds: float,
    warmup: float,
    background: bool,
    call_seconds: float | None,
) -> None:
    agent: dict[str, Any] = {"first_message": "Thanks for calling Bright Smile Dental."}
    if background:
        agent["background_track"] = "CALL_CENTER"
    await add_line(base, NUMBER, **agent)
    speech = load_wav(REPO / "tests" / "data" / "caller_book_appointment.wav")
    silence_frames = round(CYCLE_S / 0.02) - len(speech.frames)
    cycle = [media_message(f) for f in speech.frames] + [media_message(SILENT)] * silence_frames
    print(
        "calls | out late %  out p99  out max | in late %  in p99 | loop p99 | cpu  | cpu/call |"
        " runq | rx late % | gen lag p99 | recording"
    )
    best = best_both = 0
    per_call: list[float] = []
    for count in steps:
        load = Load(base, cycle)
        await load.dial(count)
        await asyncio.sleep(warmup)
        await stats(base, reset=True)
        load.start_measuring()
        churn = None
        if call_seconds:
            churn = asyncio.create_task(load.churn(call_seconds / count))
        await asyncio.sleep(seconds)
        server = await stats(base)
        if churn is not None:
            churn.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await churn
        late, frames, gen_lag = load.client_figures()
        await load.hang_up_all()
        out_pct = 100 * server["out_late"] / max(1, server["out_frames"])
        in_pct = 100 * server["in_late"] / max(1, server["in_frames"])
        rx_pct = 100 * late / max(1, frames)
        print(
            f"{count:5d} | {out_pct:9.2f}  {server['out_p99']:7.1f}  {server['out_max']:7.1f} |"
            f" {in_pct:8.2f}  {server['in_p99']:6.1f} | {server['loop_lag_p99']:8.1f} |"
            f" {server['cpu_share']:4.2f} | {100 * server['cpu_share'] / count:7.2f}% |"
            f" {server['runq_share']:4.2f} | {rx_pct:9.2f} |"
            f" {gen_lag:11.1f} |"
            f" {server['recording']}/{server['calls']}"
            + (f" | {load.churned} new calls" if call_seconds else ""),
            flush=True,
        )
        per_call.append(server["cpu_share"] / count)
        if out_pct > 1.0:
            break
        best = count
        if in_pct <= 1.0:
            best_both = count
        await asyncio.sleep(2)
    print(
        f"\nsustained with <= 1 % of outgoing frames late: {best} calls on one server core"
        f" ({best} calls per core; goal >= 100)\n"
        f"sustained with <= 1 % late in both directions (caller audio processed on time"
        f" too): {best_both} calls per core"
    )
    if per_call:
        cost = min(per_call[-3:])
        print(
            f"CPU per call at the largest steps: {100 * cost:.2f} % of a core, so a core's"
            f" CPU alone would run out at ~{1 / cost:.0f} calls"
        )
    load_avg = os.getloadavg()
    print(f"load average at the end: {load_avg[0]:.2f} {load_avg[1]:.2f} {load_avg[2]:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", default="10,25,50,75,100,150,200,250,300")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=4.0)
    parser.add_argument("--no-background", action="store_true")
    parser.add_argument(
        "--call-seconds",
        type=float,
        default=0,
        help="with churn: calls last this long on average, so while measuring one call hangs"
        " up and a new one is set up every call-seconds/N s (default 0: no churn)",
    )
    parser.add_argument("--no-record", action="store_true")
    parser.add_argument(
        "--vad",
        choices=["silero", "shared", "energy"],
        default="silero",
        help="diagnostic: phonebooth's per-call Silero (default), one shared Silero session "
        "with per-call state, or a level threshold instead of a model",
    )
    parser.add_argument(
        "--nice",
        type=int,
        default=0,
        help="niceness for the server and the generator (e.g. -10, as root) so that other"
        " work on a shared machine takes less of their cores; see the runq column",
    )
    parser.add_argument("--server-cpu", type=int, default=0)
    parser.add_argument("--client-cpu", type=int, default=1)
    args = parser.parse_args()
    cpus = os.cpu_count() or 1
    server_cpu = {args.server_cpu % cpus}
    client_cpu = {args.client_cpu % cpus}
    os.sched_setaffinity(0, client_cpu)
    if args.nice:
        os.nice(args.nice)
    env = {
        "PHONEBOOTH_MAX_CONCURRENT_CALLS": "100000",
        "PHONEBOOTH_SILENCE_HANGUP_SECONDS": "3600",
        "PHONEBOOTH_SILENCE_CHECKIN_SECONDS": "3600",
        "BENCH_RECORD": "0" if args.no_record else "1",
        "BENCH_VAD": args.vad,
    }
    argv = [sys.executable, str(Path(__file__).parent / "_voice_capacity_server.py")]
    print(
        f"server pinned to cpu {sorted(server_cpu)}, load generator to cpu {sorted(client_cpu)}"
        f" ({cpus} cores); VAD {args.vad}; background"
        f" {'off' if args.no_background else 'CALL_CENTER'}, recording"
        f" {'off' if args.no_record else 'on'}; {args.seconds:.0f} s per step; nice {args.nice}"
    )
    steps = [int(s) for s in args.steps.split(",") if s]
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:
        runner = asyncio.run
    with voice_server(env, argv=argv, cpu=server_cpu, nice=args.nice) as base:
        runner(
            run(
                base,
                steps,
                args.seconds,
                args.warmup,
                not args.no_background,
                args.call_seconds or None,
            )
        )


if __name__ == "__main__":
    main()
