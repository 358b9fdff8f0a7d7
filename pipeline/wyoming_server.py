"""The Wyoming side of the Wyoming stage: an asyncio server in its own thread, one handler per client.

Each turn (`transcribe`, `audio-start`, `audio-chunk`*, `audio-stop`) becomes one Utterance for the
VAD's `requests` port (pipeline/front_door.py carries it there), so it reaches the same workers as the
microphone: fast path, GPU->CPU failover, breakers, spool and resends. Copies sent at pauses are
decoded while the client still streams (pipeline/wyoming_audio.py). The answer comes back from
the sink's private events socket and is written as `transcript`, preceded by the streaming events
(`transcript-start`, `transcript-chunk` per segment) and followed by `transcript-stop`; clients
that do not know them ignore them, as the protocol asks.

Events are read with bounded lengths here rather than with wyoming's `async_read_event`, which
trusts the lengths a client announces (a 4 GB payload is read into memory) and drops a malformed
line silently: a server on a LAN must bound both and answer with `error`. Everything else
(events, their encoding, the server) is the `wyoming` package.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from wyoming.asr import Transcribe, Transcript, TranscriptChunk, TranscriptStart, TranscriptStop
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.error import Error
from wyoming.event import Event
from wyoming.info import AsrModel, AsrProgram, Attribution, Describe, Info
from wyoming.server import AsyncEventHandler

from pipeline import frames, metrics
from pipeline.audio import TARGET_RATE_HZ
from pipeline.config_exposure import WyomingConfig
from pipeline.front_door import FrontDoorStage, NoAnswer
from pipeline.logs import get_logger
from pipeline.wyoming_audio import TurnAudio, TurnAudioError

MAX_HEADER_BYTES = 64 * 1024     # the JSON line, and the extra `data` block
MAX_PAYLOAD_BYTES = 4 * 1024 * 1024  # one audio-chunk: 4 MiB is ~10 s of 48 kHz stereo 32-bit
PACED_SHARE = 0.5  # a client that took at least this share of the audio's length to send it streams live


class ProtocolError(ValueError):
    """An event that does not parse or exceeds the bounds; `reason` is a metric label."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


async def read_event(reader: asyncio.StreamReader) -> Event | None:
    """One Wyoming event (JSON header line, optional data block, optional payload); None at EOF."""
    try:
        line = await reader.readuntil(b"\n")
    except asyncio.IncompleteReadError as err:
        if err.partial.strip():
            raise ProtocolError("truncated", "the connection closed inside an event") from None
        return None
    except asyncio.LimitOverrunError:
        raise ProtocolError("too_large", f"an event header is longer than {MAX_HEADER_BYTES} bytes") from None
    header = _json_object(line)
    data = header.get("data") or {}
    data_length, payload_length = header.get("data_length") or 0, header.get("payload_length") or 0
    if not isinstance(header.get("type"), str) or not isinstance(data, dict):
        raise ProtocolError("malformed", "an event needs a string `type` and an object `data`")
    for name, value, bound in (("data_length", data_length, MAX_HEADER_BYTES),
                               ("payload_length", payload_length, MAX_PAYLOAD_BYTES)):
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= bound:
            raise ProtocolError("too_large" if isinstance(value, int) else "malformed",
                                f"{name} {value!r} is not an integer in 0-{bound}")
    try:
        if data_length:
            data = {**data, **_json_object(await reader.readexactly(data_length))}
        payload = await reader.readexactly(payload_length) if payload_length else None
    except asyncio.IncompleteReadError:
        raise ProtocolError("truncated", "the connection closed inside an event") from None
    return Event(type=header["type"], data=data, payload=payload)


def _json_object(raw: bytes) -> dict:
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ProtocolError("malformed", "an event header is not JSON") from None
    if not isinstance(value, dict):
        raise ProtocolError("malformed", "an event header is not a JSON object")
    return value


def asr_info(models: list[str], languages: list[str], version: str) -> Info:
    """What `describe` answers: one ASR program, streaming, `fr` first among its languages."""
    attribution = Attribution(name="LUXA", url="")  # no public home yet: no invented address
    whisper = Attribution(name="OpenAI Whisper (faster-whisper, CTranslate2)", url="https://github.com/openai/whisper")
    return Info(asr=[AsrProgram(
        name="luxa-stt", description="LUXA speech front end (faster-whisper)", attribution=attribution,
        installed=True, version=version, supports_transcript_streaming=True,
        models=[AsrModel(name=m, description=f"Whisper {m}", attribution=whisper, installed=True, version=None,
                         languages=["en"] if m.endswith(".en") else languages) for m in models])])


@dataclass
class Turn:
    """What a client asked for and what it has sent since `audio-start`."""
    language: str
    audio: TurnAudio | None = None
    utt_id: str = ""
    started: float = 0.0  # monotonic s of audio-start
    failed: bool = False  # answered with `error`: its remaining chunks and its audio-stop are ignored


class WyomingDoor:
    """Server-wide state, on the asyncio thread: the stage it hands turns to, what `describe`
    answers, the clients connected, and the threads that wait for answers (one per client)."""

    def __init__(self, cfg: WyomingConfig, stage: FrontDoorStage, info: Info, language: str,
                 languages: set[str], vad_factory: Callable[[], Callable], threshold: float, speculate_after_ms: int) -> None:
        self.cfg, self.stage, self.info = cfg, stage, info
        self.language, self.languages = language, languages
        self.vad_factory, self.threshold, self.speculate_after_ms = vad_factory, threshold, speculate_after_ms
        self.clients = 0
        self.waiters = ThreadPoolExecutor(cfg.max_clients, thread_name_prefix="wyoming-wait")
        self.log = get_logger()

    def handler(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> WyomingClient:
        return WyomingClient(reader, writer, self)


class WyomingClient(AsyncEventHandler):
    """One connection: any number of turns, one after another."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, door: WyomingDoor) -> None:
        super().__init__(reader, writer)
        self.door = door
        peer = writer.get_extra_info("peername")
        self.peer = peer[0] if isinstance(peer, tuple) else "unix"
        # Each connection is its own source (two satellites behind one Home Assistant share its address).
        self.source = f"wyoming:{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else "wyoming:unix"
        self.turn = Turn(door.language)
        self._vad = None
        self.log = door.log.bind(client=self.peer)

    async def run(self) -> None:
        door = self.door
        if self.peer != "unix" and not door.cfg.allows(self.peer):
            await self._refuse("forbidden", f"client {self.peer} is not in servers.wyoming.allowed_clients")
            return
        if door.clients >= door.cfg.max_clients:
            await self._refuse("busy", f"{door.clients} clients are connected (servers.wyoming.max_clients)")
            return
        door.clients += 1
        metrics.WYOMING_CLIENTS.set(door.clients)
        try:
            while True:
                try:
                    event = await read_event(self.reader)
                except ProtocolError as err:  # answered, logged, counted; the connection cannot be resynchronised
                    await self._error(err.reason, str(err))
                    return
                if event is None or not await self.handle_event(event):
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            self.log.info("wyoming_client_gone")
        finally:
            door.clients -= 1
            metrics.WYOMING_CLIENTS.set(door.clients)
            self.writer.close()

    async def handle_event(self, event: Event) -> bool:
        try:
            if Describe.is_type(event.type):
                await self.write_event(self.door.info.event())
            elif Transcribe.is_type(event.type):
                self._on_transcribe(Transcribe.from_event(event))
            elif AudioStart.is_type(event.type):
                self._on_audio_start(AudioStart.from_event(event))
            elif AudioChunk.is_type(event.type):
                self._on_chunk(AudioChunk.from_event(event))
            elif AudioStop.is_type(event.type):
                await self._on_audio_stop()
            return True  # other events (ping, a satellite's) are not ours: ignored, as the protocol asks
        except TurnAudioError as err:
            await self._error(err.reason, str(err))
        except (KeyError, TypeError, ValueError) as err:  # an event whose data lacks or mistypes a field
            await self._error("malformed", f"{event.type}: {type(err).__name__}: {err}")
        self.turn = Turn(self.turn.language, failed=True)  # dropped; the next audio-start begins another
        return True

    def _on_transcribe(self, transcribe: Transcribe) -> None:
        language = transcribe.language or self.door.language
        if language not in self.door.languages:
            raise TurnAudioError("language", f"language {language!r} is not one of the model's")
        self.turn = Turn(language)

    def _on_audio_start(self, start: AudioStart) -> None:
        self.turn = Turn(self.turn.language)
        if self._vad is None:
            self._vad = self.door.vad_factory()
        else:
            self._vad.reset()
        self.turn.audio = TurnAudio(start.rate, start.width, start.channels, self.door.cfg.max_audio_s,
                                    self._vad, self.door.threshold, self.door.speculate_after_ms)
        self.turn.utt_id, self.turn.started = self.door.stage.mint_id(), time.monotonic()

    def _on_chunk(self, chunk: AudioChunk) -> None:
        if self.turn.failed:
            return
        if self.turn.audio is None:  # audio without audio-start: take its format from the chunk
            self._on_audio_start(AudioStart(rate=chunk.rate, width=chunk.width, channels=chunk.channels))
        audio = self.turn.audio
        if (chunk.rate, chunk.width, chunk.channels) != (audio.rate, audio.width, audio.channels):
            raise TurnAudioError("audio_format", "an audio-chunk's format differs from its audio-start's")
        # Speculate (and run Silero) only for a client streaming at about real-time pace.
        live = time.monotonic() - self.turn.started >= PACED_SHARE * audio.samples / TARGET_RATE_HZ
        if audio.add(chunk.audio or b"", judge=live):
            self.door.stage.send(self._utterance(audio.so_far(), speculative=True))

    async def _on_audio_stop(self) -> None:
        turn, door = self.turn, self.door
        self.turn = Turn(turn.language)
        stopped = time.perf_counter()
        if turn.failed:
            return
        if turn.audio is None or turn.audio.samples == 0:
            await self._answer(None, turn.language, stopped)
            return
        speculated = turn.audio.speculated
        final = self._utterance(turn.audio.finish(), speculated_samples=speculated, utt_id=turn.utt_id,
                                language=turn.language)
        try:
            answer = await asyncio.get_running_loop().run_in_executor(door.waiters, door.stage.wait, final)
        except NoAnswer as err:
            await self._error("timeout", str(err))
            return
        await self._answer(answer, turn.language, stopped)

    def _utterance(self, audio, speculative: bool = False, speculated_samples: int = 0, utt_id: str = "",
                   language: str = "") -> frames.Utterance:
        return frames.Utterance(utt_id or self.turn.utt_id, 0.0, round(audio.size / TARGET_RATE_HZ, 3), time.time(),
                                TARGET_RATE_HZ, audio.tobytes(), speculative=speculative,
                                speculated_samples=speculated_samples, language=language or self.turn.language,
                                source=self.source)

    async def _answer(self, transcript: frames.Transcript | None, language: str, stopped: float) -> None:
        text = transcript.text if transcript is not None else ""
        segments = [s["text"] for s in transcript.segments] if transcript is not None else []
        language = transcript.language if transcript is not None and transcript.language else language
        await self.write_event(TranscriptStart(language=language).event())
        for i, segment in enumerate(segments):
            await self.write_event(TranscriptChunk(text=(" " if i else "") + segment.strip()).event())
        await self.write_event(Transcript(text=text, language=language).event())
        await self.write_event(TranscriptStop().event())
        elapsed = time.perf_counter() - stopped
        metrics.WYOMING_TURNS.labels("transcript" if text else "empty").inc()
        metrics.WYOMING_SECONDS.observe(elapsed)
        self.log.info("wyoming_transcript_sent", utt_id=transcript.utt_id if transcript else None,
                      chars=len(text), stop_to_transcript_s=round(elapsed, 3))

    async def _error(self, reason: str, text: str) -> None:
        metrics.BAD_INPUT.labels("wyoming", reason).inc()
        metrics.WYOMING_TURNS.labels("error").inc()
        self.log.warning("wyoming_client_error", reason=reason, error=text)
        await self.write_event(Error(text=text, code=reason).event())

    async def _refuse(self, reason: str, text: str) -> None:
        metrics.WYOMING_TURNS.labels("refused").inc()
        self.log.warning("wyoming_client_refused", reason=reason, error=text)
        try:
            await self.write_event(Error(text=text, code=reason).event())
        finally:
            self.writer.close()
