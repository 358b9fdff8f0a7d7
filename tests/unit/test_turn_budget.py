"""bench.turns splits each turn's wait from the pipeline's own log lines: a speculative copy still
decoding after the close is decode time, not IPC (on long speech it is most of the wait)."""

from dataclasses import dataclass
from datetime import datetime, timezone

import pytest

from bench.turns import budget

VOICE_END = 1_800_000_000.0


def stamp(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat().replace("+00:00", "Z")


@dataclass
class Final:
    utt_id: str = "u-1"
    t_closed_wall_s: float = VOICE_END + 0.9


class Log:
    """The few log lines budget() reads, as PipelineProcess.find returns them."""

    def __init__(self, transcribed_at: float, silence_ms: float = 800, verdict_ms: float | None = 600):
        self.events = [{"event": "utterance_closed", "utt_id": "u-1", "silence_ms": silence_ms},
                       {"event": "utterance_transcribed", "utt_id": "u-1", "speculated": True,
                        "timestamp": stamp(transcribed_at)}]
        if verdict_ms is not None:
            self.events.append({"event": "turn_judged", "utt_id": "u-1", "silence_ms": verdict_ms})

    def find(self, event: str, **fields) -> list[dict]:
        return [e for e in self.events if e["event"] == event and all(e.get(k) == v for k, v in fields.items())]


def test_a_copy_ready_at_the_close_leaves_only_ipc():
    final = Final()
    spent = budget(Log(final.t_closed_wall_s + 0.002), final, VOICE_END, final.t_closed_wall_s + 0.006)
    assert spent["audio_path"] == pytest.approx(100)  # 900 ms to the close, 800 of them the endpoint's silence
    assert spent["endpoint"] == 800 and spent["verdict"] == 600
    assert spent["decode"] == pytest.approx(2, abs=0.01)
    assert spent["ipc_publish"] == pytest.approx(4, abs=0.01)


def test_a_copy_still_decoding_at_the_close_is_decode_time():
    final = Final()
    spent = budget(Log(final.t_closed_wall_s + 1.3, verdict_ms=None), final, VOICE_END, final.t_closed_wall_s + 1.305)
    assert spent["decode"] == pytest.approx(1300, abs=0.01)
    assert spent["ipc_publish"] == pytest.approx(5, abs=0.01)
    assert "verdict" not in spent  # no verdict came back before the close


def test_a_turn_missing_from_the_log_has_no_budget():
    log = Log(VOICE_END + 1)
    log.events = []
    assert budget(log, Final(), VOICE_END, VOICE_END + 1) == {}
