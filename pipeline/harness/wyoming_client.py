"""A Wyoming client for tests and benchmarks: one turn, as Home Assistant sends it, timed."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import numpy as np
from wyoming.asr import Transcribe
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.client import AsyncTcpClient
from wyoming.event import Event
from wyoming.info import Describe, Info


@dataclass
class TurnResult:
    """What the server answered to one turn, and how long after `audio-stop`."""
    events: list[Event] = field(default_factory=list)
    stop_to_transcript_s: float | None = None

    @property
    def types(self) -> list[str]:
        return [e.type for e in self.events]

    @property
    def text(self) -> str | None:
        return next((e.data.get("text", "") for e in self.events if e.type == "transcript"), None)


def pcm16(samples: np.ndarray) -> bytes:
    return (np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes()


async def describe(port: int, host: str = "127.0.0.1") -> Info:
    client = AsyncTcpClient(host, port)
    await client.connect()
    try:
        await client.write_event(Describe().event())
        while True:
            event = await client.read_event()
            if Info.is_type(event.type):
                return Info.from_event(event)
    finally:
        await client.disconnect()


async def transcribe(port: int, pcm: bytes, rate: int, width: int = 2, channels: int = 1, language: str | None = None,
                     chunk_samples: int = 1024, realtime: bool = False, host: str = "127.0.0.1",
                     timeout_s: float = 120.0) -> TurnResult:
    """Send one turn; read until `transcript-stop` (or `error`, or the connection closing)."""
    client = AsyncTcpClient(host, port)
    await client.connect()
    result = TurnResult()
    try:
        await client.write_event(Transcribe(language=language).event())
        await client.write_event(AudioStart(rate=rate, width=width, channels=channels).event())
        step = chunk_samples * width * channels
        for offset in range(0, len(pcm), step):
            await client.write_event(AudioChunk(rate=rate, width=width, channels=channels,
                                                audio=pcm[offset:offset + step]).event())
            if realtime:  # as a microphone would: the next chunk when this one has been spoken
                await asyncio.sleep(chunk_samples / rate)
        await client.write_event(AudioStop().event())
        stopped = time.perf_counter()
        while True:
            event = await asyncio.wait_for(client.read_event(), timeout_s)
            if event is None:
                break
            result.events.append(event)
            if event.type == "transcript":
                result.stop_to_transcript_s = time.perf_counter() - stopped
            if event.type in ("transcript-stop", "error"):
                break
    finally:
        await client.disconnect()
    return result
