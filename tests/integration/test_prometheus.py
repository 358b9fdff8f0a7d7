"""Metrics exist from the first scrape, and a real Prometheus server scrapes and queries them.

The pipeline listens to a silent file and keeps running, so nothing has happened yet when /ready
first answers 200: every series named below must already be there, at 0. Then Debian's
`prometheus` (started here on a loopback port it picks itself) scrapes LUXA, and its HTTP API
must answer for the original request's four metric names, and `rate(stt_errors_total[...])` must
be 0, not "no data".
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import urllib.parse
from pathlib import Path

import numpy as np
import pytest
import soundfile

from pipeline import metrics as luxa_metrics
from pipeline.harness.pipeline_process import pipeline_config
from pipeline.harness.scrape import get, samples, value
from pipeline.harness.waiting import wait_until
from tests.unit.test_dashboard import dashboard_exprs

pytestmark = pytest.mark.slow
ORIGINAL_NAMES = ("stt_transcriptions_total", "stt_errors_total", "stt_latency_seconds", "stt_vram_usage_bytes")


@pytest.fixture
def quiet_pipeline(run_dir, start_pipeline, tmp_path) -> str:
    """A pipeline that has heard nothing yet, just READY; its metrics URL."""
    silence = tmp_path / "silence.wav"
    soundfile.write(silence, np.zeros(16000, dtype=np.float32), 16000)
    pipeline = start_pipeline(pipeline_config(run_dir), "--source", str(silence), "--keep-running")
    url = pipeline.metrics_url()
    wait_until(lambda: get(f"{url}/ready")[0] == 200, 120, what="/ready to answer 200")
    return url


def test_every_known_series_is_at_zero_in_the_first_scrape_then_a_real_prometheus_reads_them(quiet_pipeline,
                                                                                           tmp_path):
    first_scrape(quiet_pipeline)
    prometheus = start_prometheus(tmp_path, quiet_pipeline)
    try:
        prometheus_reads_them(prometheus.url)
    finally:
        prometheus.stop()


def first_scrape(url: str) -> None:
    status, body = get(f"{url}/metrics")
    assert status == 200
    m = samples(body.decode())
    for device in ("cpu", "cuda"):  # both workers are configured; the GPU one cannot start here
        for outcome in luxa_metrics.OUTCOMES:
            assert ("stt_transcriptions_total", (("device", device), ("model", "base"), ("outcome", outcome))) in m
        for kind in luxa_metrics.ERROR_KINDS:
            assert m[("stt_errors_total", (("device", device), ("error", kind), ("model", "base")))] == 0
        assert ("stt_latency_seconds_count", (("device", device), ("model", "base"))) in m
    assert value(m, "stt_transcriptions_total", outcome="ok") == 0
    assert m[("stt_vram_usage_bytes", (("device", "cuda:0"),))] == 0
    for stage in ("capture", "vad", "sink", "transcribe_cpu", "transcribe_gpu"):
        assert ("stt_stage_restarts_total", (("reason", "heartbeat_missed"), ("stage", stage))) in m, stage
    assert ("stt_transcripts_published_total", (("stage", "sink"),)) in m


class Prometheus:
    """Debian's prometheus on a loopback port it picks itself, scraping LUXA every second."""

    def __init__(self, tmp_path: Path, target_url: str) -> None:
        target = urllib.parse.urlsplit(target_url).netloc
        (tmp_path / "prometheus.yml").write_text(
            "global:\n  scrape_interval: 1s\n"
            f"scrape_configs:\n  - job_name: luxa\n    static_configs:\n      - targets: ['{target}']\n")
        self._log = open(tmp_path / "prometheus.log", "w+")
        self._proc = subprocess.Popen([shutil.which("prometheus"), f"--config.file={tmp_path / 'prometheus.yml'}",
                                       f"--storage.tsdb.path={tmp_path / 'tsdb'}", "--web.listen-address=127.0.0.1:0"],
                                      stdout=self._log, stderr=subprocess.STDOUT)
        try:
            address = wait_until(lambda: _listening_on(tmp_path / "prometheus.log"), 30, what="prometheus to listen")
            self.url = f"http://{address}"
            wait_until(lambda: get(f"{self.url}/-/ready")[0] == 200, 30, what="prometheus to be ready")
        except AssertionError:
            self.stop()
            raise

    def stop(self) -> None:
        self._proc.terminate()
        self._proc.wait(30)
        self._log.close()


def start_prometheus(tmp_path: Path, target_url: str) -> Prometheus:
    if shutil.which("prometheus") is None:
        pytest.skip("Debian's prometheus is not installed (scripts/setup --test installs it); "
                    "the first-scrape checks above passed")
    return Prometheus(tmp_path, target_url)


def _listening_on(log_path) -> str | None:
    found = re.search(r'msg="Listening on" address=(127\.0\.0\.1:\d+)', log_path.read_text())
    return found.group(1) if found else None


def query(prometheus_url: str, expr: str) -> list[dict]:
    status, body = get(f"{prometheus_url}/api/v1/query?query={urllib.parse.quote(expr)}")
    reply = json.loads(body)
    assert status == 200 and reply["status"] == "success", reply
    return reply["data"]["result"]


def prometheus_reads_them(prometheus: str) -> None:
    wait_until(lambda: query(prometheus, 'up{job="luxa"} == 1'), 60, what="prometheus to scrape LUXA")
    for name in ORIGINAL_NAMES:
        series = query(prometheus, name if name != "stt_latency_seconds" else f"{name}_count")
        assert series, f"prometheus has no {name}"
    # Two scrapes later a rate exists, and it is 0: an alert sees "no errors", not "no data".
    rates = wait_until(lambda: query(prometheus, "sum(rate(stt_errors_total[5s]))"), 60, what="a rate of errors")
    assert float(rates[0]["value"][1]) == 0
    for expr in dashboard_exprs():  # the shipped Grafana dashboard's queries are valid PromQL here
        query(prometheus, expr)
