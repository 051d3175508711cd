"""Call recordings: the stereo recorder, signed links, the audio routes and retention."""

from __future__ import annotations

import asyncio
import os
import stat
import threading
import time
import wave
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select

from phonebooth.api.app import create_app
from phonebooth.api.state import AppState
from phonebooth.calls.registry import LiveCalls
from phonebooth.calls.retention import RecordingRetention, purge_old_recordings
from phonebooth.calls.setup import CallService
from phonebooth.config import Settings
from phonebooth.core.url_signing import (
    recording_signature,
    sign_recording_url,
    verify_recording_signature,
)
from phonebooth.storage.db import Database
from phonebooth.storage.orgs import create_organization, default_organization
from phonebooth.storage.tables import Call, WebhookDelivery, utcnow
from phonebooth.storage.webhook_config import set_org_webhook_url
from phonebooth.voice.recording import CallRecorder, RecordingStore, load_recording_key
from tests.conftest import ADMIN_KEY, Api, LiveServer, make_settings
from tests.helpers import other_org_key

RATE = 8000
FRAME = RATE // 50  # samples in 20 ms
KEY = b"k" * 32
NOW = 1_767_225_600


def frame(value: int) -> bytes:
    """A 20 ms frame whose every sample is `value`: frames are recognisable once mixed."""
    return np.full(FRAME, value, dtype="<i2").tobytes()


def speech(count: int, freq: float, seed: int = 0) -> list[bytes]:
    t = np.arange(count * FRAME) / RATE
    wave_ = (8000 * np.sin(2 * np.pi * freq * t + seed)).astype("<i2")
    return [wave_[i * FRAME : (i + 1) * FRAME].tobytes() for i in range(count)]


def read_channels(path: Path) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    with wave.open(str(path), "rb") as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (2, 2, RATE)
        samples = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    return samples[0::2], samples[1::2]


# -- the recorder -----------------------------------------------------------------------------


def test_each_side_lands_on_its_own_channel(tmp_path: Path) -> None:
    recorder = CallRecorder(tmp_path / "rec" / "1.wav", sample_rate=RATE)
    hello = speech(50, 300.0)  # the caller speaks for a second, the agent is silent
    for chunk in hello:
        recorder.caller(chunk)
        recorder.agent(bytes(2 * FRAME))
    reply = speech(25, 500.0)  # then the agent answers while the caller is silent
    for chunk in reply:
        recorder.caller(bytes(2 * FRAME))
        recorder.agent(chunk)
    path = recorder.close()

    caller, agent = read_channels(path)
    assert caller.size == agent.size == 75 * FRAME
    assert caller[: 50 * FRAME].tobytes() == b"".join(hello)
    assert not caller[50 * FRAME :].any()
    assert not agent[: 50 * FRAME].any()
    assert agent[50 * FRAME :].tobytes() == b"".join(reply)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # conversations are private
    assert recorder.duration_seconds == pytest.approx(1.5)


def test_lagging_stream_is_aligned_by_frame_count(tmp_path: Path) -> None:
    recorder = CallRecorder(tmp_path / "2.wav", sample_rate=RATE)
    for i in range(10):  # the caller runs 10 frames ahead...
        recorder.caller(frame(i + 1))
    for i in range(6):  # ...the agent catches up on 6 of them...
        recorder.agent(frame(-(i + 1)))
    for i in range(10, 12):
        recorder.caller(frame(i + 1))
    path = recorder.close()  # ...and the 6 frames it never sent are padded with silence

    caller, agent = read_channels(path)
    per_frame_caller = caller.reshape(-1, FRAME)[:, 0].tolist()
    per_frame_agent = agent.reshape(-1, FRAME)[:, 0].tolist()
    assert per_frame_caller == list(range(1, 13))
    assert per_frame_agent == [-1, -2, -3, -4, -5, -6, 0, 0, 0, 0, 0, 0]


def test_agent_ahead_and_odd_chunk_sizes(tmp_path: Path) -> None:
    recorder = CallRecorder(tmp_path / "3.wav", sample_rate=RATE)
    agent_audio = b"".join(frame(-(i + 1)) for i in range(8))
    for start in range(0, len(agent_audio), 3 * FRAME):  # 1.5 frames a chunk
        recorder.agent(agent_audio[start : start + 3 * FRAME])
    for i in range(5):
        recorder.caller(frame(i + 1))
    caller, agent = read_channels(recorder.close())
    assert caller.reshape(-1, FRAME)[:, 0].tolist() == [1, 2, 3, 4, 5, 0, 0, 0]
    assert agent.reshape(-1, FRAME)[:, 0].tolist() == [-1, -2, -3, -4, -5, -6, -7, -8]


def test_file_is_playable_before_close_and_a_stalled_side_is_bounded(tmp_path: Path) -> None:
    recorder = CallRecorder(
        tmp_path / "4.wav", sample_rate=RATE, max_lead_seconds=0.1, chunk_bytes=4 * FRAME * 4
    )
    for i in range(20):  # the agent stream never sends anything
        recorder.caller(frame(i + 1))
    # 5 frames may wait for the agent; 15 were written against silence, 12 reached the disk
    caller, agent = read_channels(recorder.path)
    assert caller.reshape(-1, FRAME)[:, 0].tolist() == list(range(1, 13))
    assert not agent.any()
    caller, agent = read_channels(recorder.close())
    assert caller.reshape(-1, FRAME)[:, 0].tolist() == list(range(1, 21))


async def test_close_is_idempotent_late_frames_are_ignored_and_discard_deletes(
    tmp_path: Path,
) -> None:
    recorder = CallRecorder(tmp_path / "5.wav", sample_rate=RATE)
    recorder.caller(frame(1))
    path = await recorder.aclose()
    recorder.agent(frame(2))  # a frame racing the hang-up
    assert recorder.close() == path and recorder.closed
    assert read_channels(path)[1].tolist() == [0] * FRAME
    recorder.discard()
    assert not path.exists()

    dropped = CallRecorder(tmp_path / "6.wav", sample_rate=RATE)
    dropped.caller(frame(1))
    dropped.discard()
    dropped.discard()
    assert not (tmp_path / "6.wav").exists()


def test_other_sample_rates_and_bad_ones(tmp_path: Path) -> None:
    recorder = CallRecorder(tmp_path / "7.wav", sample_rate=16000)
    recorder.caller(bytes(640))
    with wave.open(str(recorder.close()), "rb") as wav:
        assert (wav.getframerate(), wav.getnframes()) == (16000, 320)
    with pytest.raises(ValueError):
        CallRecorder(tmp_path / "8.wav", sample_rate=11025)


def test_store_honours_the_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PHONEBOOTH_RECORDINGS", "off")
    monkeypatch.setenv("PHONEBOOTH_RECORDING_RETENTION_DAYS", "7")
    settings = Settings(data_dir=tmp_path)
    assert (settings.recordings, settings.recording_retention_days) == (False, 7)
    monkeypatch.setenv("PHONEBOOTH_RECORDINGS", "on")
    assert Settings(data_dir=tmp_path).recordings is True

    off = RecordingStore(tmp_path, "http://x", enabled=False)
    assert off.open(1) is None
    on = RecordingStore(tmp_path, "http://x")
    recorder = on.open(9)
    assert recorder is not None and recorder.path == (tmp_path / "recordings" / "9.wav").absolute()
    recorder.discard()


# -- signing ----------------------------------------------------------------------------------


def test_signed_url_shape_and_expiry() -> None:
    url = sign_recording_url("https://pb.example.com/", 42, key=KEY, now=NOW)
    sig = recording_signature(42, NOW + 3600, key=KEY)
    assert url == f"https://pb.example.com/recordings/42.wav?exp={NOW + 3600}&sig={sig}"
    assert len(sig) == 64 and int(sig, 16) >= 0
    exp = NOW + 3600
    assert verify_recording_signature(42, exp, sig, key=KEY, now=NOW)
    assert verify_recording_signature(42, exp, sig, key=KEY, now=exp)  # the last valid second
    assert not verify_recording_signature(42, exp, sig, key=KEY, now=exp + 1)


@pytest.mark.parametrize(
    ("call_id", "exp", "sig", "key"),
    [
        (43, NOW + 3600, None, KEY),  # another call
        (42, NOW + 7200, None, KEY),  # a later deadline
        (42, NOW + 3600, "0" * 64, KEY),  # a made-up signature
        (42, NOW + 3600, "", KEY),
        (42, NOW + 3600, "é" * 64, KEY),  # not even ASCII
        (42, NOW + 3600, None, b"another key" * 3),
    ],
)
def test_signature_rejects_anything_changed(
    call_id: int, exp: int, sig: str | None, key: bytes
) -> None:
    good = recording_signature(42, NOW + 3600, key=KEY)
    assert not verify_recording_signature(
        call_id, exp, good if sig is None else sig, key=key, now=NOW
    )


@given(
    call_id=st.integers(min_value=1, max_value=2**53),
    now=st.integers(min_value=0, max_value=2**40),
    key=st.binary(min_size=32, max_size=64),
    flip=st.integers(min_value=0, max_value=63),
)
def test_signature_round_trip_and_single_character_tampering(
    call_id: int, now: int, key: bytes, flip: int
) -> None:
    url = sign_recording_url("http://h", call_id, key=key, now=now)
    query = dict(part.split("=") for part in url.split("?")[1].split("&"))
    exp, sig = int(query["exp"]), query["sig"]
    assert verify_recording_signature(call_id, exp, sig, key=key, now=now + 3599)
    assert verify_recording_signature(call_id, exp, sig.upper(), key=key, now=now)
    tampered = sig[:flip] + ("0" if sig[flip] != "0" else "1") + sig[flip + 1 :]
    assert not verify_recording_signature(call_id, exp, tampered, key=key, now=now)
    assert not verify_recording_signature(call_id, exp, sig, key=key, now=now + 3601)


def test_key_file_is_created_once_private_and_shared_by_racers(tmp_path: Path) -> None:
    keys: list[bytes] = []
    threads = [
        threading.Thread(target=lambda: keys.append(load_recording_key(tmp_path / "d")))
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(keys)) == 1 and len(keys[0]) == 32
    path = tmp_path / "d" / "recording-key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_recording_key(tmp_path / "d") == keys[0]
    assert sorted(p.name for p in path.parent.iterdir()) == ["recording-key"]
    path.write_text("not hex")
    with pytest.raises(ValueError, match="recording-key"):
        load_recording_key(tmp_path / "d")


# -- the routes -------------------------------------------------------------------------------


@pytest.fixture
async def served(app_settings: Settings) -> AsyncIterator[tuple[Api, AppState]]:
    """The `api` fixture, plus the app's state for the database and the recording store."""
    app = create_app(app_settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield Api(client, ADMIN_KEY), app.state.phonebooth


async def add_call(
    db: Database,
    call_id: int,
    *,
    org_id: int | None = None,
    ended: datetime | None = None,
    recording: Path | None = None,
    status: str | None = None,
) -> None:
    async with db.session() as session:
        if org_id is None:
            org = await default_organization(session)
            assert org is not None
            org_id = org.id
        start = (ended or utcnow()) - timedelta(minutes=3)
        session.add(
            Call(
                id=call_id,
                org_id=org_id,
                direction="inbound",
                from_number="+15555550100",
                to_number="+15555550200",
                status=status or ("completed" if ended else "in_progress"),
                end_reason="caller_hangup" if ended else None,
                start_time=start,
                end_time=ended,
                recording_path=None if recording is None else str(recording),
            )
        )
        await session.commit()


def record(store: RecordingStore, call_id: int, frames: int = 10) -> Path:
    recorder = store.open(call_id)
    assert recorder is not None
    for chunk in speech(frames, 440.0):
        recorder.caller(chunk)
        recorder.agent(bytes(len(chunk)))
    return recorder.close()


def local(url: str) -> str:
    """The path and query of a link, to send through the in-process client."""
    parsed = httpx.URL(url)
    return parsed.raw_path.decode("ascii")


async def test_audio_link_is_404_until_there_is_a_recording_then_serves_the_wav(
    served: tuple[Api, AppState],
) -> None:
    api, state = served
    await add_call(state.db, 501, ended=utcnow())
    assert (await api.get("/v1/calls/501/audio")).status_code == 404
    assert (await api.get("/v1/calls/501")).json()["recording_url"] is None
    assert (await api.get("/v1/calls/999/audio")).status_code == 404

    await add_call(state.db, 502, ended=utcnow(), recording=record(state.recordings, 502))
    answer = await api.get("/v1/calls/502/audio")
    assert answer.status_code == 200
    url = answer.json()["url"]
    assert url.startswith(f"{state.settings.resolved_public_url}/recordings/502.wav?exp=")

    response = await api.client.get(local(url))  # no API key: the signature is the credential
    assert response.status_code == 200
    assert response.headers["content-type"] == "audio/wav"
    assert response.content == state.recordings.path_for(502).read_bytes()

    call = (await api.get("/v1/calls/502")).json()
    assert (await api.client.get(local(call["recording_url"]))).status_code == 200
    listed = (await api.get("/v1/calls")).json()["results"]
    assert {row["id"]: row["recording_url"] is not None for row in listed} == {
        501: False,
        502: True,
    }


async def test_link_refused_when_expired_tampered_or_for_another_call(
    served: tuple[Api, AppState],
) -> None:
    api, state = served
    await add_call(state.db, 601, ended=utcnow(), recording=record(state.recordings, 601))
    await add_call(state.db, 602, ended=utcnow(), recording=record(state.recordings, 602))
    url = local((await api.get("/v1/calls/601/audio")).json()["url"])
    path, query = url.split("?")
    params = dict(part.split("=") for part in query.split("&"))
    exp, sig = params["exp"], params["sig"]

    assert (await api.client.get(url)).status_code == 200
    flipped = ("1" if sig[0] == "0" else "0") + sig[1:]
    for bad in (
        f"{path}?exp={exp}&sig={flipped}",
        f"{path}?exp={int(exp) + 60}&sig={sig}",
        f"/recordings/602.wav?exp={exp}&sig={sig}",
        f"{path}?exp={exp}",
        f"{path}?sig={sig}",
        path,
        f"{path}?exp=-1&sig={sig}",
        f"{path}?exp=1e12&sig={sig}",
    ):
        response = await api.client.get(bad)
        assert response.status_code == 403, bad
        assert response.json() == {"detail": "This recording link is invalid or has expired"}

    real_clock = state.recordings.clock
    state.recordings.clock = lambda: real_clock() + 3600 + 2  # an hour later
    try:
        assert (await api.client.get(url)).status_code == 403
    finally:
        state.recordings.clock = real_clock

    # A valid link to a call whose file is gone is a 404, not a 403.
    state.recordings.path_for(602).unlink()
    gone = local(state.recordings.signed_url(602))
    assert (await api.client.get(gone)).status_code == 404
    assert (await api.client.get(local(state.recordings.signed_url(777)))).status_code == 404


async def test_audio_link_is_organization_scoped(
    served: tuple[Api, AppState], app_settings: Settings
) -> None:
    api, state = served
    await add_call(state.db, 701, ended=utcnow(), recording=record(state.recordings, 701))
    other = api.as_key(await other_org_key(app_settings))
    assert (await other.get("/v1/calls/701/audio")).status_code == 404
    assert (await api.as_key("sk_live_" + "Z9" * 20).get("/v1/calls/701/audio")).status_code == 401
    assert (await api.get("/v1/calls/701/audio")).status_code == 200


async def test_call_complete_carries_a_signed_link(tmp_path: Path, sqlite_url: str) -> None:
    db = Database(sqlite_url)
    await db.upgrade()
    async with db.session() as session:
        org = await create_organization(session, "x")
        await set_org_webhook_url(session, org.id, "https://hooks.example.com/pb")
        await session.commit()
    await add_call(db, 801, org_id=org.id)
    store = RecordingStore(tmp_path, "https://pb.example.com", clock=lambda: NOW)
    path = record(store, 801)
    async with httpx.AsyncClient() as client:
        service = CallService(
            db=db,
            client=client,
            registry=LiveCalls(1),
            incoming_timeout=2,
            recording_url=store.url_for,
        )
        ended = await service.end(801, "caller_hangup", recording_path=str(path))
    expected = store.signed_url(801)
    assert ended["recording_url"] == expected
    async with db.session() as session:
        row = (
            await session.execute(select(WebhookDelivery).where(WebhookDelivery.call_id == 801))
        ).scalar_one()
        assert row.payload is not None
        assert row.payload["type"] == "call.complete"
        assert row.payload["data"]["recording_url"] == expected
    await db.dispose()


async def test_signed_link_works_over_real_http(live: LiveServer) -> None:
    state: AppState = live.app.state.phonebooth
    await add_call(state.db, 901, ended=utcnow(), recording=record(state.recordings, 901, 50))
    url = (await live.json("GET", "/v1/calls/901/audio"))["url"]
    assert url.startswith(live.base + "/recordings/901.wav?")
    async with httpx.AsyncClient() as anonymous:
        response = await anonymous.get(url)
    assert response.status_code == 200
    target = Path(live.settings.data_dir) / "fetched.wav"
    target.write_bytes(response.content)
    caller, agent = read_channels(target)
    assert caller.size == 50 * FRAME and caller.any() and not agent.any()


# -- retention --------------------------------------------------------------------------------


def old_file(path: Path, age: timedelta) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"RIFF")
    stamp = time.time() - age.total_seconds()
    os.utime(path, (stamp, stamp))
    return path


async def test_retention_deletes_old_recordings_only(tmp_path: Path, database_url: str) -> None:
    db = Database(database_url)
    await db.upgrade()
    async with db.session() as session:
        org = await create_organization(session, "x")
        await session.commit()
    now = utcnow()
    data_dir = tmp_path / "data"
    store = RecordingStore(data_dir, "http://x")
    files = {call_id: record(store, call_id) for call_id in (1, 2, 3)}
    await add_call(db, 1, org_id=org.id, ended=now - timedelta(days=31), recording=files[1])
    await add_call(db, 2, org_id=org.id, ended=now - timedelta(days=29), recording=files[2])
    await add_call(db, 3, org_id=org.id, recording=files[3])  # a very long call still going
    await add_call(db, 4, org_id=org.id, ended=now - timedelta(days=90))  # never recorded
    dangling = data_dir / "recordings" / "5.wav"  # the path is stored, the file already gone
    await add_call(db, 5, org_id=org.id, ended=now - timedelta(days=40), recording=dangling)
    orphan_old = old_file(store.path_for(6), timedelta(days=45))  # a crash left it behind
    orphan_new = old_file(store.path_for(7), timedelta(days=1))
    stray = old_file(data_dir / "recordings" / "notes.wav", timedelta(days=45))

    assert sorted(await purge_old_recordings(db, data_dir, days=30, now=now)) == [1, 5]

    assert not files[1].exists() and not orphan_old.exists()
    assert files[2].exists() and files[3].exists() and orphan_new.exists() and stray.exists()
    async with db.session() as session:
        paths = {c.id: c.recording_path for c in (await session.execute(select(Call))).scalars()}
    assert paths == {1: None, 2: str(files[2]), 3: str(files[3]), 4: None, 5: None}
    assert await purge_old_recordings(db, data_dir, days=30, now=now) == []
    await db.dispose()


async def test_retention_task_runs_at_start_up_and_stops(tmp_path: Path, sqlite_url: str) -> None:
    db = Database(sqlite_url)
    await db.upgrade()
    async with db.session() as session:
        org = await create_organization(session, "x")
        await session.commit()
    store = RecordingStore(tmp_path, "http://x")
    path = record(store, 11)
    await add_call(db, 11, org_id=org.id, ended=utcnow() - timedelta(days=3), recording=path)

    kept = RecordingRetention(db, tmp_path, days=0)  # 0 keeps recordings forever
    kept.start()
    await kept.stop()
    assert path.exists()

    task = RecordingRetention(db, tmp_path, days=2, interval=3600)
    task.start()
    for _ in range(200):
        if not path.exists():
            break
        await asyncio.sleep(0.02)
    assert not path.exists()
    await task.stop()
    await task.stop()
    await db.dispose()


async def test_app_start_up_purges(tmp_path: Path, sqlite_url: str) -> None:
    settings = make_settings(tmp_path, sqlite_url, recording_retention_days=1)
    db = Database(sqlite_url)
    await db.upgrade()
    async with db.session() as session:
        org = await create_organization(session, "default")
        await session.commit()
    path = record(RecordingStore(settings.data_dir, "http://x"), 21)
    await add_call(db, 21, org_id=org.id, ended=utcnow() - timedelta(days=2), recording=path)
    await db.dispose()

    app = create_app(settings)
    async with app.router.lifespan_context(app):
        for _ in range(200):
            if not path.exists():
                break
            await asyncio.sleep(0.02)
    assert not path.exists()
