import dataclasses
import typing

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline import frames
from pipeline.frames import KINDS, SCHEMA_VERSION, FrameDecodeError, decode, encode

SAMPLE_VALUES = {int: 7, float: 1.5, str: "x", bool: True, bytes: b"\x00\x01\x02\x03", list: [{"a": 1}]}


def sample(cls):
    hints = typing.get_type_hints(cls)
    return cls(**{f.name: SAMPLE_VALUES[hints[f.name]] for f in dataclasses.fields(cls)})


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_kind_round_trips(kind):
    frame = sample(KINDS[kind])
    parts = encode(frame, "test")
    assert decode(parts) == frame


def test_pcm_travels_as_its_own_buffer():
    chunk = frames.AudioChunk(1, 2, 3.0, 16000, 1, b"\x00" * 2048)
    topic, header, *buffers = encode(chunk, "capture")
    assert topic == b"audio_chunk" and buffers == [b"\x00" * 2048]
    assert b"pcm" not in header


def test_transcript_and_ack_topics():
    final = dataclasses.replace(sample(frames.Transcript), is_partial=False)
    assert encode(final, "sink")[0] == b"transcript"
    assert encode(dataclasses.replace(final, is_partial=True), "sink")[0] == b"transcript.partial"
    assert encode(frames.Ack("u1"), "sink")[0] == b"ack"


def _header(**fields):
    return msgpack.packb({"v": SCHEMA_VERSION, "kind": "ack", "stage": "t", **fields})


@pytest.mark.parametrize("parts, message", [
    ([b"ack"], "got 1 part"),
    ([b"ack", b"\xc1\xc1"], "not msgpack"),
    ([b"ack", msgpack.packb([1, 2])], "must be a map"),
    ([b"ack", msgpack.packb({"v": 99, "kind": "ack", "stage": "t", "utt_id": "u"})], "schema version 99"),
    ([b"ack", msgpack.packb({"v": 1, "kind": "pickle", "stage": "t"})], "unknown frame kind"),
    ([b"ack", msgpack.packb({"v": 1, "kind": "ack", "utt_id": "u"})], "name the sender"),
    ([b"ack", _header()], "missing field 'utt_id'"),
    ([b"ack", _header(utt_id=5)], "expected str"),
    ([b"ack", _header(utt_id="u", extra=1)], "unknown field"),
    ([b"ack", _header(utt_id="u"), b"stray"], "unexpected buffer"),
    ([b"x", msgpack.packb({"v": 1, "kind": "audio_chunk", "stage": "t", "seq": 1, "t_capture_ns": 1,
                            "t_capture_wall_s": 1.0, "sample_rate_hz": 16000, "channels": 1})], "missing buffer"),
    ([b"x", msgpack.packb({"v": 1, "kind": "route", "stage": "t", "active": "a", "epoch": True})], "expected int"),
])
def test_malformed_frames_raise_a_clear_error(parts, message):
    with pytest.raises(FrameDecodeError, match=message):
        decode(parts)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=64), min_size=0, max_size=4))
def test_random_bytes_only_ever_raise_frame_decode_error(parts):
    try:
        decode(parts)
    except FrameDecodeError:
        pass
