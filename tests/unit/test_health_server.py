"""The supervisor's HTTP endpoint answers even when building an answer fails."""

from __future__ import annotations

from pipeline.harness.scrape import get
from pipeline.health import HealthServer


def test_a_failing_status_is_a_500_with_its_reason_and_the_server_keeps_serving(tmp_path, log_capture):
    calls = []

    def status(gauges):
        calls.append(gauges)
        if len(calls) == 1:
            raise OSError("metrics file half written")
        return True, {"alive": True}

    server = HealthServer("127.0.0.1", 0, str(tmp_path), status)
    server.start()
    try:
        code, body = get(f"http://127.0.0.1:{server.port}/ready")
        assert code == 500 and b"metrics file half written" in body
        assert get(f"http://127.0.0.1:{server.port}/ready")[0] == 200
    finally:
        server.stop()
    assert [e["event"] for e in log_capture.entries] == ["health_request_failed"]
