"""A Wyoming turn's audio: every PCM format the protocol allows, bounds, and when to speculate."""

import asyncio

import numpy as np
import pytest

from pipeline.wyoming_audio import WINDOW, TurnAudio, TurnAudioError
from pipeline.wyoming_server import MAX_PAYLOAD_BYTES, ProtocolError, read_event

RATE = 16000


def turn(rate=RATE, width=2, channels=1, probs=None, max_s=60.0, speculate_after_ms=120):
    """A turn whose 'Silero' answers from `probs` (one per window), silence once they run out."""
    answers = iter(probs or [])
    return TurnAudio(rate, width, channels, max_s, lambda w, r: next(answers, 0.0), 0.5, speculate_after_ms)


def tone(seconds: float, rate: int) -> np.ndarray:
    return 0.5 * np.sin(2 * np.pi * 440 * np.arange(int(seconds * rate)) / rate)


@pytest.mark.parametrize("width, encode", [
    (1, lambda x: (x * 127 + 128).astype(np.uint8).tobytes()),
    (2, lambda x: (x * 32767).astype("<i2").tobytes()),
    (3, lambda x: b"".join(int(v).to_bytes(3, "little", signed=True) for v in (x * 8388607).astype(np.int64))),
    (4, lambda x: (x * 2147483647).astype("<i4").tobytes()),
])
def test_every_width_decodes_to_the_same_samples(width, encode):
    signal = tone(0.1, RATE)
    audio = turn(width=width)
    audio.add(encode(signal))
    assert np.allclose(audio.finish(), signal, atol=2 / 127 if width == 1 else 1e-3)


def test_stereo_44k1_becomes_16k_mono_of_the_same_length():
    left = tone(1.0, 44100)
    stereo = np.stack([left, left], axis=1)
    audio = turn(rate=44100, channels=2)
    for block in np.array_split((stereo * 32767).astype("<i2"), 7):  # chunks cut anywhere
        audio.add(block.tobytes())
    out = audio.finish()
    assert abs(out.size - RATE) <= 2 and abs(np.sqrt(np.mean(out ** 2)) - 0.5 / np.sqrt(2)) < 0.01


@pytest.mark.parametrize("args, reason", [
    ({"rate": 4000}, "audio_format"), ({"width": 5}, "audio_format"), ({"channels": 0}, "audio_format")])
def test_formats_outside_the_protocol_are_refused(args, reason):
    with pytest.raises(TurnAudioError) as err:
        turn(**args)
    assert err.value.reason == reason


def test_partial_frames_and_overlong_turns_are_refused():
    with pytest.raises(TurnAudioError, match="whole 4-byte frames"):
        turn(channels=2).add(b"\x00" * 6)
    audio = turn(max_s=1.0)
    audio.add(b"\x00" * RATE * 2)
    with pytest.raises(TurnAudioError) as err:
        audio.add(b"\x00\x00")
    assert err.value.reason == "too_long"


def test_a_pause_after_speech_asks_for_one_copy_and_speech_after_it_cancels_it():
    audio = turn(probs=[0.9] * 10 + [0.1] * 10 + [0.9] * 2)
    window = b"\x00\x00" * WINDOW
    due = [audio.add(window) for _ in range(10 + 3)]
    assert due == [False] * 13 and not audio.speculated  # 3 silent windows: 96 ms < 120 ms
    assert audio.add(window) is True  # the 4th: 128 ms of silence
    copy = audio.so_far()
    assert copy.size == 14 * WINDOW == audio.speculated
    assert [audio.add(window) for _ in range(6)] == [False] * 6  # one copy per pause
    audio.add(window)  # speech again: the copy no longer stands for the turn
    assert audio.speculated == 0


def test_silence_alone_asks_for_no_copy():
    audio = turn(probs=[0.0] * 40)
    assert not any(audio.add(b"\x00\x00" * WINDOW) for _ in range(40))


def read(raw: bytes):
    async def go():
        reader = asyncio.StreamReader()
        reader.feed_data(raw)
        reader.feed_eof()
        return await read_event(reader)
    return asyncio.run(go())


def test_an_event_with_data_and_payload_is_read():
    event = read(b'{"type": "audio-chunk", "data": {"rate": 16000}, "data_length": 27, "payload_length": 4}\n'
                 b'{"width": 2, "channels": 1}\x01\x02\x03\x04')
    assert (event.type, event.data, event.payload) == ("audio-chunk", {"rate": 16000, "width": 2, "channels": 1},
                                                       b"\x01\x02\x03\x04")
    assert read(b"") is None


@pytest.mark.parametrize("raw, reason", [
    (b"not json\n", "malformed"),
    (b"[1, 2]\n", "malformed"),
    (b'{"data": {}}\n', "malformed"),
    (b'{"type": "audio-chunk", "payload_length": %d}\n' % (MAX_PAYLOAD_BYTES + 1), "too_large"),
    (b'{"type": "audio-chunk", "payload_length": "lots"}\n', "malformed"),
    (b'{"type": "audio-chunk", "payload_length": 10}\nabc', "truncated"),
    (b'{"type": "describe"', "truncated"),
    (b'{"type": "' + b"a" * 70_000 + b'"}\n', "too_large"),  # longer than the reader's 64 KiB line limit
])
def test_hostile_events_are_typed_errors(raw, reason):
    with pytest.raises(ProtocolError) as err:
        read(raw)
    assert err.value.reason == reason
