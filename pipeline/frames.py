"""Every wire type of the pipeline, its schema version, and encode/decode.

Wire form (jupyter's header + buffers): multipart `[topic, header, *buffers]` where `header`
is a msgpack map `{"v", "kind", "stage", ...fields}` and each `bytes` field travels as its
own buffer frame, in field order. The registry is closed: no importlib, no pickle.
"""

from __future__ import annotations

import dataclasses
import re
import typing
from dataclasses import dataclass, field
from typing import Any, ClassVar

import msgpack

SCHEMA_VERSION = 1  # protocol version, not the package version
MAX_HEADER_BYTES = 1 << 20
UTT_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")  # ids become file names and log lines: keep them tame
MAX_BUFFER_BYTES = 64 << 20  # ~17 min of 16 kHz float32; utterances are capped far below
MAX_AUDIO_CHUNK_S = 2.0  # an AudioChunk is one 32 ms frame, or a floor-quiet microphone's burst


class FrameDecodeError(ValueError):
    """A frame that does not parse or validate; the runner counts, logs and drops it."""


@dataclass(frozen=True, slots=True)
class AudioChunk:
    """16 kHz mono float32 PCM from capture: one `audio.frame_ms` frame, or (a microphone below the
    VAD's silence floor for long, pipeline/quiet_wake.py) the whole frames that piled up in one
    wait, at most MAX_AUDIO_CHUNK_S: one message instead of sixteen while nothing can happen."""
    KIND: ClassVar[str] = "audio_chunk"
    seq: int
    t_capture_ns: int          # time.monotonic_ns() at capture (same host)
    t_capture_wall_s: float    # time.time() at capture, for cross-host latency
    sample_rate_hz: int
    channels: int
    pcm: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class EndOfStream:
    """The file source is exhausted; VAD flushes and reports when everything is published."""
    KIND: ClassVar[str] = "end_of_stream"
    seq: int
    source: str


@dataclass(frozen=True, slots=True)
class CaptureGap:
    """Audio lost between two chunks (device re-open, capture restart)."""
    KIND: ClassVar[str] = "capture_gap"
    seq: int
    duration_ms: float
    reason: str


@dataclass(frozen=True, slots=True)
class Utterance:
    """One stretch of speech closed by the VAD, sent to the active transcription worker."""
    KIND: ClassVar[str] = "utterance"
    utt_id: str
    start_s: float             # offset in the capture stream
    end_s: float
    t_closed_wall_s: float     # time.time() when the VAD closed it (partials: when sent)
    sample_rate_hz: int
    pcm: bytes = field(repr=False)
    is_partial: bool = False   # the utterance so far, still open: decode fast, never retry
    speculative: bool = False  # speech just paused: decode as a final, keep the answer, publish nothing
    speculated_samples: int = 0  # on a final: only silence followed the speculative copy of this length
    pause_samples: int = 0     # on a speculative copy: how much of its end the VAD heard as silence (0 = unknown)
    end_seq: int = 0           # the capture chunk it ends in: a restarted VAD replays from after it
    language: str = ""         # a front door's request (Wyoming's `transcribe`); "" = transcribe.language
    source: str = ""           # who said it: `mic`, `file`, `wyoming:<client address>`, `openai:<client address>`


@dataclass(frozen=True, slots=True)
class Transcript:
    """A worker's answer for one utterance; the sink publishes it under topic `transcript`."""
    KIND: ClassVar[str] = "transcript"
    utt_id: str
    text: str
    language: str
    segments: list             # [{"start_s", "end_s", "text"}]
    model_used: str
    device: str
    worker: str
    audio_duration_s: float
    processing_time_s: float
    rtf: float
    is_speech: bool            # False: the sink acknowledges it but publishes nothing
    t_closed_wall_s: float     # copied from the Utterance
    t_published_wall_s: float = 0.0  # set by the sink just before publishing
    is_partial: bool = False   # interim text, topic `transcript.partial`, superseded by the final
    start_s: float = 0.0       # where the utterance lies in the capture stream (s)
    end_s: float = 0.0
    source: str = ""           # copied from the Utterance: which microphone, file or client it came from
    history: str = ""          # finals only, set by the sink: which numbering pub_seq counts in (pipeline/history.py)
    pub_seq: int = 0           # 1, 2, ... in publication order within `history`; 0 = not numbered


@dataclass(frozen=True, slots=True)
class History:
    """Sink to subscribers, every heartbeat on `transcript.history`: the last final published, so a
    subscriber that missed some learns it even when nothing follows (pipeline/history.py)."""
    KIND: ClassVar[str] = "history"
    history: str
    pub_seq: int


@dataclass(frozen=True, slots=True)
class TurnHint:
    """Worker to VAD: what the speculative decode says of the open utterance's text (is the
    sentence finished?), so the VAD closes it now or waits longer (pipeline/endpointing.py)."""
    KIND: ClassVar[str] = "turn_hint"
    utt_id: str
    speculated_samples: int    # the length of the copy judged: stale once speech resumed
    complete: bool             # what the text says
    reason: str                # sentence_end | no_sentence_end | trails_off | ends_on_function_word | non_speech
    end_logprob: float = 0.0   # how sure the decoder was of the end (the VAD has the threshold)
    turn_probability: float = -1.0  # Smart Turn's P(turn complete) when asked (finished text only); -1 = not asked


@dataclass(frozen=True, slots=True)
class WorkerReady:
    """Worker to dispatcher, after every job and with every heartbeat: its credit. It is free for
    another job when idle and it has finished every job sent to it (pipeline/pool.py)."""
    KIND: ClassVar[str] = "worker_ready"
    worker: str                # its stage name (`transcribe_cpu.1`); a remote one's own name
    pool: str                  # which class it serves: transcribe_gpu | transcribe_cpu
    pid: int
    done: int                  # jobs finished since it started
    idle: bool                 # no job in its hands right now


@dataclass(frozen=True, slots=True)
class ReplayRequest:
    """A (re)started VAD to capture: send again every chunk from `from_seq` on (its committed offset)."""
    KIND: ClassVar[str] = "replay_request"
    from_seq: int


@dataclass(frozen=True, slots=True)
class ReplayStart:
    """Capture to VAD, ahead of the replayed chunks: they start at `first_seq`; anything between
    `from_seq` and it was older than the replay buffer (audio_replay_s) and is gone."""
    KIND: ClassVar[str] = "replay_start"
    from_seq: int
    first_seq: int


@dataclass(frozen=True, slots=True)
class Ack:
    """The sink has handled this utterance (published or dropped as non-speech)."""
    KIND: ClassVar[str] = "ack"
    utt_id: str


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """Every stage, every loop pass, on the control plane."""
    KIND: ClassVar[str] = "heartbeat"
    stage: str
    pid: int
    state: str                 # pipeline.runner.StageState value
    last_seq: int
    busy_since_ns: int         # 0 when idle; monotonic_ns of the call in progress


@dataclass(frozen=True, slots=True)
class Route:
    """Supervisor to VAD: send utterances to this worker; a new epoch means resend pending ones."""
    KIND: ClassVar[str] = "route"
    active: str
    epoch: int


@dataclass(frozen=True, slots=True)
class Stop:
    """Supervisor to stages: drain and exit 0."""
    KIND: ClassVar[str] = "stop"
    reason: str


@dataclass(frozen=True, slots=True)
class Activate:
    """Supervisor to a spare: you replace the stage's dead process now (its model is loaded)."""
    KIND: ClassVar[str] = "activate"
    pid: int
    restart_count: int


@dataclass(frozen=True, slots=True)
class Owned:
    """Supervisor to stages, every heartbeat interval: the pids it owns. A stage whose supervisor
    died is adopted by the restarted supervisor that names it here, and exits at once when one
    does not (pipeline/ownership.py)."""
    KIND: ClassVar[str] = "owned"
    supervisor_pid: int
    pids: list


@dataclass(frozen=True, slots=True)
class Drained:
    """VAD to supervisor: end of stream reached and every utterance acknowledged."""
    KIND: ClassVar[str] = "drained"
    utterances: int


Frame = (AudioChunk | EndOfStream | CaptureGap | Utterance | Transcript | History | TurnHint | WorkerReady
         | ReplayRequest | ReplayStart | Ack | Heartbeat | Route | Stop | Activate | Owned | Drained)
KINDS: dict[str, type] = {cls.KIND: cls for cls in typing.get_args(Frame)}
TOPIC_OVERRIDES = {"transcript": b"transcript", "ack": b"ack", "history": b"transcript.history"}

_PY_TYPES = {int: (int,), float: (float, int), str: (str,), bool: (bool,), bytes: (bytes,), list: (list, tuple)}


def _field_specs(cls: type) -> list[tuple[str, tuple, bool]]:
    hints = typing.get_type_hints(cls)
    specs = []
    for f in dataclasses.fields(cls):
        has_default = f.default is not dataclasses.MISSING
        specs.append((f.name, _PY_TYPES[hints[f.name]], has_default))
    return specs


_SPECS = {kind: _field_specs(cls) for kind, cls in KINDS.items()}
_FIELD_NAMES = {kind: {name for name, _, _ in specs} for kind, specs in _SPECS.items()}


def topic_of(frame: Frame) -> bytes:
    if isinstance(frame, Transcript) and frame.is_partial:
        return b"transcript.partial"
    return TOPIC_OVERRIDES.get(frame.KIND, frame.KIND.encode())


def encode(frame: Frame, stage: str) -> list[bytes]:
    """Frame -> multipart message `[topic, header, *buffers]`."""
    header: dict[str, Any] = {"v": SCHEMA_VERSION, "kind": frame.KIND, "stage": stage}
    buffers = []
    for name, types, _ in _SPECS[frame.KIND]:
        value = getattr(frame, name)
        if name == "stage":
            header["stage"] = value  # the frame names its sender itself
        elif types == (bytes,):
            buffers.append(bytes(value))
        else:
            header[name] = value
    return [topic_of(frame), msgpack.packb(header, use_bin_type=True), *buffers]


def decode(parts: list[bytes]) -> Frame:
    """Multipart message -> Frame, or FrameDecodeError saying what is wrong."""
    if len(parts) < 2:
        raise FrameDecodeError(f"expected [topic, header, *buffers], got {len(parts)} part(s)")
    header = _unpack_header(parts[1])
    version, kind, sender = header.pop("v", None), header.pop("kind", None), header.pop("stage", None)
    if not isinstance(sender, str):
        raise FrameDecodeError(f"header field 'stage' must name the sender, got {sender!r}")
    if version != SCHEMA_VERSION:
        raise FrameDecodeError(f"unsupported schema version {version!r} (expected {SCHEMA_VERSION})")
    if kind not in KINDS:
        raise FrameDecodeError(f"unknown frame kind {kind!r}")
    if "stage" in _FIELD_NAMES[kind]:
        header["stage"] = sender  # Heartbeat.stage is the envelope's sender
    return KINDS[kind](**_field_values(kind, header, list(parts[2:])))


def _unpack_header(raw: bytes) -> dict:
    if len(raw) > MAX_HEADER_BYTES:
        raise FrameDecodeError(f"header of {len(raw)} bytes exceeds {MAX_HEADER_BYTES}")
    try:
        header = msgpack.unpackb(raw, raw=False, strict_map_key=True)
    except Exception as err:  # msgpack raises several unrelated types for bad input
        raise FrameDecodeError(f"header is not msgpack: {type(err).__name__}: {err}") from None
    if not isinstance(header, dict):
        raise FrameDecodeError(f"header must be a map, got {type(header).__name__}")
    return header


def _field_values(kind: str, header: dict, buffers: list[bytes]) -> dict:
    values = {}
    for name, types, has_default in _SPECS[kind]:
        if types == (bytes,):
            if not buffers:
                raise FrameDecodeError(f"{kind}: missing buffer for {name!r}")
            value = bytes(buffers.pop(0))
            if len(value) > MAX_BUFFER_BYTES:
                raise FrameDecodeError(f"{kind}.{name}: buffer of {len(value)} bytes too large")
        elif name in header:
            value = header.pop(name)
        elif has_default:
            continue
        else:
            raise FrameDecodeError(f"{kind}: missing field {name!r}")
        if not isinstance(value, types) or (types[0] is not bool and isinstance(value, bool)):
            raise FrameDecodeError(f"{kind}.{name}: expected {types[0].__name__}, got {type(value).__name__}")
        values[name] = list(value) if types[0] is list else value
    if "utt_id" in values and not UTT_ID.fullmatch(values["utt_id"]):
        raise FrameDecodeError(f"{kind}.utt_id: {values['utt_id'][:40]!r} is not 1-128 of [A-Za-z0-9._:-]")
    if header:
        raise FrameDecodeError(f"{kind}: unknown field(s) {sorted(map(str, header))}")
    if buffers:
        raise FrameDecodeError(f"{kind}: {len(buffers)} unexpected buffer(s)")
    return values


def to_bytes(frame: Frame, stage: str) -> bytes:
    """One frame as a single blob (durable spools): the msgpack list of its wire parts."""
    return msgpack.packb(encode(frame, stage), use_bin_type=True)


def from_bytes(blob: bytes) -> Frame:
    try:
        parts = msgpack.unpackb(blob, raw=False, max_bin_len=MAX_BUFFER_BYTES)
    except Exception as err:  # msgpack raises several unrelated types for bad input
        raise FrameDecodeError(f"blob is not msgpack: {type(err).__name__}: {err}") from None
    if not isinstance(parts, list) or not all(isinstance(p, bytes) for p in parts):
        raise FrameDecodeError("blob must be a list of byte strings")
    return decode(parts)
