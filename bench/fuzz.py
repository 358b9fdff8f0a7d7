"""Fuzzing campaign: hostile frames into real stage processes, hostile audio files into the library.

    python -m bench.fuzz --frames 10000 --files 1000

Frames (hypothesis strategies): random parts, truncated and bit-flipped encodings, wrong-typed
and missing fields, oversized headers, the wrong kind for a port, and well-formed frames with
hostile values (NaN/inf PCM, 384 kHz, 8 channels, odd byte counts, empty audio). Each is sent
to one stage process's socket; afterwards every message must be accounted for in the stage's
own metrics (decoded or counted malformed), each malformed one logged exactly once, and the
process must still be the same one. Audio files go through `RobustSTTManager.transcribe_now`
with the real model and through the capture stage's file source: each must give a result or a
typed `AudioInputError`, nothing else. tests/integration/test_fuzz.py runs a short version.
"""

from __future__ import annotations

import argparse
import io
import json
import struct
import tempfile
from dataclasses import fields
from pathlib import Path

import numpy as np
import soundfile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline import frames, topology
from pipeline.config import parse_config
from pipeline.harness.lone_stage import LoneStage
from pipeline.harness.waiting import wait_until
from pipeline.runner import CONTROL_KINDS
from pipeline.transport import Poller, PortSpec, recv_parts, send_raw
from stages.vad import AUDIO_KINDS

ROOT = Path(__file__).resolve().parents[1]
_SCALARS = {int: st.one_of(st.integers(-(2**63), 2**64 - 1), st.sampled_from([0, 1, -1, 8000, 16000, 384000])),
            float: st.floats(allow_nan=True, allow_infinity=True),
            str: st.one_of(st.text(max_size=40), st.from_regex(frames.UTT_ID, fullmatch=True)),
            bool: st.booleans(),
            list: st.lists(st.dictionaries(st.text(max_size=5), st.integers(-(2**63), 2**63 - 1) | st.text(max_size=5)),
                           max_size=3)}


def pcm_bytes(max_samples: int = 4000) -> st.SearchStrategy[bytes]:
    """Float32 PCM that is short, silent, noisy, NaN/inf, or not whole samples."""
    samples = st.integers(0, max_samples).flatmap(
        lambda n: st.sampled_from(["zeros", "noise", "nan", "inf"]).map(lambda kind: _pcm(n, kind)))
    return st.one_of(samples, st.binary(max_size=63))


def _pcm(n: int, kind: str) -> bytes:
    audio = np.random.default_rng(n).uniform(-1, 1, n).astype(np.float32) if kind != "zeros" else np.zeros(n, np.float32)
    if kind in ("nan", "inf") and n:
        audio[n // 2] = np.nan if kind == "nan" else np.inf
    return audio.tobytes()


def frame_of(kind: str) -> st.SearchStrategy:
    """A decodable frame of `kind` with arbitrary (often hostile) field values."""
    cls = frames.KINDS[kind]
    hints = {f.name: f.type for f in fields(cls)}
    types = {name: {"int": int, "float": float, "str": str, "bool": bool, "bytes": bytes, "list": list}[t]
             for name, t in hints.items()}
    args = {name: pcm_bytes() if t is bytes else _SCALARS[t] for name, t in types.items()}
    if "utt_id" in args:
        args["utt_id"] = st.from_regex(frames.UTT_ID, fullmatch=True)
    if kind == "audio_chunk":
        args["sample_rate_hz"] = st.sampled_from([16000, 16000, 8000, 384000, 0, -1])
        args["channels"] = st.sampled_from([1, 1, 2, 8, 0])
    if kind == "utterance":
        args["sample_rate_hz"] = st.sampled_from([16000, 16000, 8000, 384000, 0, -1, 1])
    return st.builds(cls, **args)


def messages(kinds: tuple[str, ...], avoid: tuple[str, ...] = (), topics: tuple[bytes, ...] = ()
             ) -> st.SearchStrategy[list[bytes]]:
    """Multipart messages for a port that takes `kinds`; `avoid` kinds are never sent whole (Stop).

    `topics`: a SUB port's subscriptions; every message gets one, or ZeroMQ would filter it out
    before the stage ever saw it."""
    usable = [k for k in frames.KINDS if k not in avoid]
    valid = st.sampled_from([k for k in kinds if k not in avoid] or usable).flatmap(frame_of)
    encoded = valid.map(lambda f: frames.encode(f, "fuzz"))
    any_topic = st.sampled_from([k.encode() for k in kinds] + [b"transcript", b"x"])
    strategy = st.one_of(
        encoded,                                                            # well-formed, hostile values
        st.sampled_from(usable).flatmap(frame_of).map(lambda f: frames.encode(f, "fuzz")),  # wrong kind for the port
        st.lists(st.binary(max_size=80), min_size=1, max_size=4),           # noise
        st.tuples(encoded, st.integers(0, 200)).map(_truncate),             # cut short
        st.tuples(encoded, st.integers(0, 10**6), st.integers(0, 7)).map(_flip_bit),
        st.tuples(any_topic, st.dictionaries(st.sampled_from(["v", "kind", "stage", "utt_id", "pcm", "seq"]),
                                          _SCALARS[int] | _SCALARS[str] | st.none() | st.binary(max_size=8)))
        .map(lambda t: [t[0], _packb(t[1])]),                               # wrong or missing fields
        any_topic.map(lambda t: [t, _packb({"v": 1, "kind": "ack", "stage": "x", "utt_id": "a" * (frames.MAX_HEADER_BYTES + 1)})]),
        encoded.map(lambda parts: [*parts, b"extra"]),                      # a stray buffer
    )
    if topics:
        strategy = st.tuples(st.sampled_from(topics), strategy).map(lambda t: [t[0], *t[1][1:]] if len(t[1]) > 1 else [t[0]])
    return strategy.filter(lambda parts: not _is_whole(parts, avoid))


def _packb(value) -> bytes:
    import msgpack

    return msgpack.packb(value, use_bin_type=True)


def _truncate(args) -> list[bytes]:
    parts, cut = args
    return [parts[0], parts[1][: cut % max(1, len(parts[1]))], *parts[2:]]


def _flip_bit(args) -> list[bytes]:
    parts, pos, bit = args
    header = bytearray(parts[1])
    header[pos % len(header)] ^= 1 << bit
    return [parts[0], bytes(header), *parts[2:]]


def _is_whole(parts: list[bytes], kinds: tuple[str, ...]) -> bool:
    try:
        return frames.decode(parts).KIND in kinds
    except frames.FrameDecodeError:
        return False


def expected_malformed(parts: list[bytes], kinds: tuple[str, ...]) -> bool:
    """What the runner must do with it: count it as malformed (True) or pass it on."""
    try:
        return frames.decode(parts).KIND not in kinds
    except frames.FrameDecodeError:
        return True


# -- one stage process, with this process as its supervisor and peers -------------------------

def fuzz_port(stage: LoneStage, stage_name: str, sock, port: str, kinds: tuple[str, ...], examples: int,
              avoid: tuple[str, ...] = (), topics: tuple[bytes, ...] = (), timeout_s: float = 600,
              drain=None, to: bytes | None = None) -> dict:
    """Send `examples` hostile messages to one port; check each is handled, and malformed ones counted and logged once.
    `to`: from a ROUTER, the stage's identity (each message goes to it)."""
    handled_before = stage.handled(stage_name)
    malformed_before = stage.counter("stt_frames_malformed_total", stage=stage_name, port=port)
    logged_before = stage.log_count("frame_malformed", port=port)
    tally = {"sent": 0, "malformed": 0}

    @settings(max_examples=examples, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(parts=messages(kinds, avoid, topics))
    def send_one(parts: list[bytes]) -> None:
        send_raw(sock, parts if to is None else [to, *parts])
        _drain(drain)
        tally["sent"] += 1
        tally["malformed"] += expected_malformed(parts, kinds)

    send_one()
    wait_until(lambda: _drain(drain) or stage.handled(stage_name) - handled_before >= tally["sent"], timeout_s,
               what=f"{stage_name}:{port} to take {tally['sent']} messages")
    malformed = stage.counter("stt_frames_malformed_total", stage=stage_name, port=port) - malformed_before
    logged = stage.log_count("frame_malformed", port=port) - logged_before
    assert stage.proc.poll() is None, f"{stage_name} died:\n{stage.log()[-3000:]}"
    return {"stage": stage_name, "port": port, **tally, "counted_malformed": int(malformed), "logged_malformed": logged,
            "handled": int(stage.handled(stage_name) - handled_before), "same_pid": stage.proc.poll() is None}


FUZZED_STAGES = ("sink", "vad", "dispatch", "transcribe")


def _drain(sock) -> None:
    """Take what the stage sends downstream, as its real peer would: else its backpressure stops it."""
    for one in sock.sockets if isinstance(sock, _Drains) else (sock,):
        while one is not None and Poller([one]).readable(0):
            recv_parts(one)


def fuzz_stages(root: Path, examples: int, only: tuple[str, ...] = FUZZED_STAGES) -> list[dict]:
    """Every input socket of every stage (control on the sink: one runner serves it for all)."""
    rows = []
    if "sink" in only:
        sink = LoneStage(root / "s", "sink")
        try:
            results = sink.peer(PortSpec("push", topology.results(sink.run_dir), bind=False))
            rows.append(fuzz_port(sink, "sink", results, "results", ("transcript",), examples))
            sink.wait_subscribed(len(CONTROL_KINDS))
            rows.append(fuzz_port(sink, "sink", sink.down, "_control_down", CONTROL_KINDS, examples, avoid=("stop",),
                                  topics=tuple(k.encode() for k in CONTROL_KINDS)))
        finally:
            sink.close()
    if "vad" in only:
        vad = LoneStage(root / "v", "vad", config={"vad": {"max_pending": 10**6, "partial_interval_ms": 0}})
        try:
            audio = vad.peer(PortSpec("push", topology.audio(vad.run_dir), bind=False))
            rows.append(fuzz_port(vad, "vad", audio, "audio", AUDIO_KINDS, examples))
            requests = vad.peer(PortSpec("push", topology.requests(vad.run_dir), bind=False))  # the front doors'
            rows.append(fuzz_port(vad, "vad", requests, "requests", ("utterance",), examples))
        finally:
            vad.close()
    if "dispatch" in only:
        rows += _fuzz_dispatcher(root / "d", examples)
    if "transcribe" in only:
        rows.append(_fuzz_worker(root / "w", examples))
    return rows


def _fuzz_dispatcher(run_dir: Path, examples: int) -> list[dict]:
    """Its workers' ROUTER (from a stand-in worker's DEALER) and a VAD's job port."""
    dispatcher = LoneStage(run_dir, "dispatch")
    try:
        results = dispatcher.peer(PortSpec("pull", topology.results(dispatcher.run_dir), bind=True))
        worker = dispatcher.peer(PortSpec("dealer", topology.pool(dispatcher.run_dir), bind=False))
        drain = _Drains(results, worker)
        rows = [fuzz_port(dispatcher, "dispatch", worker, "pool", topology.POOL_KINDS,
                          examples, drain=drain)]
        jobs = dispatcher.peer(PortSpec("push", topology.utterances(dispatcher.run_dir, "transcribe_cpu"), bind=True))
        rows.append(fuzz_port(dispatcher, "dispatch", jobs, "transcribe_cpu", ("utterance",), examples, drain=drain))
        return rows
    finally:
        dispatcher.close()


def _fuzz_worker(run_dir: Path, examples: int) -> dict:
    """Its one socket, from a stand-in dispatcher's ROUTER: the worker's credit tells its identity."""
    worker = LoneStage(run_dir, "transcribe", "--worker", "transcribe_cpu")
    try:
        dispatcher = worker.peer(PortSpec("router", topology.pool(worker.run_dir), bind=True))
        wait_until(lambda: Poller([dispatcher]).readable(0.1), 30, what="the worker's first credit")
        identity = recv_parts(dispatcher)[0]
        return fuzz_port(worker, "transcribe_cpu", dispatcher, "dispatch", ("utterance",), examples,
                         timeout_s=7200, drain=dispatcher, to=identity)
    finally:
        worker.close()


class _Drains:
    """Several sockets a stage sends to, drained as one."""

    def __init__(self, *sockets) -> None:
        self.sockets = sockets


# -- hostile audio files ------------------------------------------------------------------------

def _wav(rate: int, channels: int, n: int, subtype: str, kind: str) -> bytes:
    audio = np.frombuffer(_pcm(n * channels, kind), np.float32).reshape(n, channels)
    out = io.BytesIO()
    soundfile.write(out, audio if subtype == "FLOAT" else np.nan_to_num(audio), rate, subtype=subtype, format="WAV")
    return out.getvalue()


def _patch(data: bytes, marker: bytes, offset: int, value: int) -> bytes:
    at = data.find(marker)
    if at < 0:
        return data
    at += offset
    return data[:at] + struct.pack("<I", value) + data[at + 4:]


def audio_files() -> st.SearchStrategy[bytes]:
    wav = st.builds(_wav, st.sampled_from([1, 8000, 16000, 44100, 384000, 768000]), st.sampled_from([1, 2, 8]),
                    st.integers(0, 3000), st.sampled_from(["PCM_16", "FLOAT"]), st.sampled_from(["zeros", "noise", "nan", "inf"]))
    return st.one_of(
        wav,
        st.tuples(wav, st.integers(0, 100)).map(lambda t: t[0][: t[1] % max(1, len(t[0]))]),              # truncated
        st.tuples(wav, st.sampled_from([0xFFFFFFF0, 0x7FFFFFFF, 0])).map(lambda t: _patch(t[0], b"data", 4, t[1])),
        st.tuples(wav, st.sampled_from([0xFFFFFFFF, 0, 1])).map(lambda t: _patch(t[0], b"fmt ", 12, t[1])),  # rate
        st.tuples(wav, st.sampled_from([0, 9, 0xFFFF])).map(lambda t: _patch(t[0], b"fmt ", 10, t[1])),     # channels
        st.binary(max_size=400),
        st.sampled_from([b"RIFF", b"fLaC", b"OggS", b"ID3\x04"]).flatmap(lambda m: st.binary(max_size=300).map(m.__add__)),
    )


def fuzz_audio(examples: int, tmp: Path, manager=None) -> dict:
    """Each file through transcribe_now (real model) and the file source: a result or a typed refusal."""
    from pipeline import metrics
    from pipeline.audio import AudioInputError
    from pipeline.sources import FileSource
    from pipeline.stt import RobustSTTManager

    if manager is None:
        manager = RobustSTTManager(parse_config({}).transcribe, device="cpu", name="fuzz")
        manager.initialize_now()
    refused_before = _bad_input_total(metrics, "fuzz")
    tally: dict[str, int] = {"files": 0, "transcribed": 0, "refused": 0, "source_refused": 0}
    path = tmp / "fuzz.wav"

    @settings(max_examples=examples, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(data=audio_files())
    def one(data: bytes) -> None:
        path.write_bytes(data)
        tally["files"] += 1
        try:
            manager.transcribe_now(path)
            tally["transcribed"] += 1
        except AudioInputError:
            tally["refused"] += 1
        source = FileSource(path, 512, 16000, realtime=False, max_s=60)
        while not source.finished:
            tally["source_refused"] += sum(getattr(e, "kind", "") == "bad_file" for e in source.read(1.0))

    one()
    tally["counted_refused"] = int(_bad_input_total(metrics, "fuzz") - refused_before)
    return tally


def _bad_input_total(metrics, stage: str) -> float:
    return sum(s.value for fam in metrics.BAD_INPUT.collect() for s in fam.samples
               if s.name == "stt_bad_input_total" and s.labels.get("stage") == stage)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=10_000, help="hostile messages per stage socket")
    parser.add_argument("--files", type=int, default=1_000, help="hostile audio files (0: none)")
    parser.add_argument("--stages", default=",".join(FUZZED_STAGES), help="which stages' sockets to fuzz")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="luxa-fz-") as tmp:
        rows = fuzz_stages(Path(tmp), args.frames, tuple(args.stages.split(",")))
        audio = fuzz_audio(args.files, Path(tmp)) if args.files else {}
    for row in rows:
        print(json.dumps(row))
    print(json.dumps({"audio_files": audio}))
    out = Path(__file__).resolve().parent / "out"
    out.mkdir(exist_ok=True)
    (out / "fuzz.json").write_text(json.dumps({"sockets": rows, "audio_files": audio}, indent=1))


if __name__ == "__main__":
    main()
