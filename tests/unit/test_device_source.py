"""Live capture logic against a fake PortAudio (sounddevice) module: rates, missing devices, unplugging."""

from types import SimpleNamespace

import numpy as np
import pytest

from pipeline.quiet_wake import QuietWake
from pipeline.sources import DeviceSource, DeviceUnavailableError, SourceEvent

DEVICES = [{"name": "Built-in Microphone", "max_input_channels": 2, "default_samplerate": 48000.0},
           {"name": "HDMI out", "max_input_channels": 0, "default_samplerate": 48000.0}]


class FakeStream:
    def __init__(self, callback, samplerate, blocksize, **_):
        self.callback, self.samplerate, self.blocksize = callback, samplerate, blocksize
        self.active = False

    def start(self):
        self.active = True

    def stop(self):
        self.active = False

    def close(self):
        pass

    def deliver(self, seconds: float, overflow: bool = False, level: float = 0.25):
        n = int(self.samplerate * seconds)
        for start in range(0, n, self.blocksize):
            block = np.full((min(self.blocksize, n - start), 1), level, dtype=np.float32)
            self.callback(block, block.shape[0], None, SimpleNamespace(input_overflow=overflow))


class FakeSoundDevice:
    def __init__(self, supports_16k=True, present=True):
        self.supports_16k, self.present, self.streams = supports_16k, present, []

    def query_devices(self, device=None, kind=None):
        return DEVICES[0] if kind else DEVICES

    def check_input_settings(self, samplerate, **_):
        if samplerate == 16000 and not self.supports_16k:
            raise ValueError("Invalid sample rate")

    def InputStream(self, device, **kwargs):  # noqa: N802 - sounddevice's name
        if not self.present:
            raise ValueError(f"No input device matching {device!r}")
        self.streams.append(FakeStream(**kwargs))
        return self.streams[-1]


def source(sd, clock=None, overflows=None, **kwargs):
    kwargs |= {"clock": clock} if clock else {}
    counter = overflows if overflows is not None else []
    return DeviceSource("Built-in", 512, 16000, lambda: counter.append(1), sd=sd, **kwargs)


def test_16k_device_gives_whole_frames():
    sd = FakeSoundDevice()
    src = source(sd)
    src.open()
    sd.streams[0].deliver(0.1)
    blocks = src.read(0.1)
    assert [b.size for b in blocks] == [512, 512, 512]  # 1600 samples: the rest waits for more
    assert src.read(0.01) == []


def test_device_without_16k_is_opened_at_its_rate_and_resampled():
    sd = FakeSoundDevice(supports_16k=False)
    src = source(sd)
    src.open()
    assert sd.streams[0].samplerate == 48000
    sd.streams[0].deliver(1.0)
    blocks = src.read(0.1)
    assert all(b.size == 512 for b in blocks) and 15000 <= len(blocks) * 512 <= 16000
    assert abs(float(np.median(np.concatenate(blocks))) - 0.25) < 0.01  # the level is kept


def test_missing_device_error_lists_the_available_inputs():
    with pytest.raises(DeviceUnavailableError) as err:
        source(FakeSoundDevice(present=False)).open()
    assert "No input device matching 'Built-in'" in str(err.value)
    assert "Built-in Microphone" in str(err.value) and "HDMI" not in str(err.value)


def test_overflows_are_counted_not_blocking():
    sd, overflows = FakeSoundDevice(), []
    src = source(sd, overflows=overflows)
    src.open()
    sd.streams[0].deliver(0.064, overflow=True)
    assert len(overflows) == 2 and len(src.read(0.1)) == 2


def test_unplugged_device_is_reopened_and_the_gap_reported(fake_clock):
    sd = FakeSoundDevice()
    src = source(sd, clock=fake_clock)
    src.open()
    sd.streams[0].active = False          # PortAudio stopped the stream: the headset is gone
    sd.present = False
    assert src.read(0.0) == []            # lost: the stream is closed
    fake_clock.advance(1.0)
    assert src.read(0.0) == []            # still absent
    sd.present = True
    fake_clock.advance(1.5)
    events = src.read(0.0)
    assert len(events) == 1 and isinstance(events[0], SourceEvent) and events[0].kind == "gap"
    assert events[0].gap_ms == pytest.approx(2500)
    sd.streams[-1].deliver(0.064)
    assert len(src.read(0.1)) == 2


def test_a_long_quiet_lets_blocks_pile_up_and_sound_ends_it_at_once():
    sd = FakeSoundDevice()
    src = source(sd, quiet=QuietWake(-70.0, 1000, 16000), quiet_wake_s=0.01)
    src.open()
    sd.streams[0].deliver(0.8, level=0.0)
    assert not src.quiet                  # not yet longer than any utterance can stay open
    sd.streams[0].deliver(0.8, level=0.0)
    assert src.quiet
    assert len(src.read(1.0)) == 50       # 1.6 s: every quiet block is still delivered
    sd.streams[0].deliver(0.032, level=0.01)  # -40 dBFS: sound
    assert not src.quiet and len(src.read(1.0)) == 1


def test_a_quiet_burst_is_sent_as_a_few_long_chunks_and_sound_as_frames_again():
    sd = FakeSoundDevice()
    src = source(sd, quiet=QuietWake(-70.0, 1000, 16000), quiet_wake_s=0.01, max_burst_frames=16)
    src.open()
    sd.streams[0].deliver(1.6, level=0.0)
    burst = src.read(1.0)
    assert [chunk.size for chunk in burst] == [16 * 512] * 3 + [2 * 512]  # every sample, in 4 messages, not 50
    sd.streams[0].deliver(0.064, level=0.01)  # sound: frame by frame at once, for the VAD's timing
    assert [chunk.size for chunk in src.read(1.0)] == [512, 512]


def test_without_a_floor_every_block_wakes_the_reader():
    wake = QuietWake(None, 1000, 16000)
    assert all(wake.wake_now(np.zeros(512, dtype=np.float32)) for _ in range(100)) and not wake.quiet


def test_capture_wires_the_vad_silence_floor_into_its_microphone(monkeypatch, tmp_path):
    from pipeline.config import AudioConfig, VadConfig
    from stages.capture import CaptureStage

    sd = FakeSoundDevice()
    monkeypatch.setattr("pipeline.sources._sounddevice", lambda: sd)
    stage = CaptureStage(AudioConfig(), tmp_path, vad=VadConfig(hold_silence_ms=500, max_silence_ms=500))
    stage.start()
    sd.streams[0].deliver(0.8, level=0.0)
    assert not stage.source.quiet      # 0.8 s: an utterance could still be open (0.5 s + 0.5 s margin)
    sd.streams[0].deliver(0.4, level=0.0)
    assert stage.source.quiet
    (tmp_path / "off").mkdir()
    off = CaptureStage(AudioConfig(quiet_wake_ms=0), tmp_path / "off")
    off.start()
    sd.streams[1].deliver(3.0, level=0.0)
    assert not off.source.quiet        # quiet_wake_ms: 0 wakes it for every chunk
    stage.close()
    off.close()
