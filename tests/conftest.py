"""Shared fixtures: data paths, a fake clock, short ipc run dirs, wait_until, log capture."""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import pytest
import structlog

DATA_DIR = Path(__file__).parent / "data"


@pytest.fixture
def data_dir() -> Path:
    return DATA_DIR


class FakeClock:
    """Monotonic seconds that only move when a test says so."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def fake_clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def run_dir():
    """A short private dir: ipc:// paths must stay under ~100 characters."""
    path = Path(tempfile.mkdtemp(prefix="luxa-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def log_capture():
    capture = structlog.testing.LogCapture()
    structlog.configure(processors=[capture])
    yield capture
    structlog.reset_defaults()


def wait_until(predicate, timeout_s: float, interval_s: float = 0.05, what: str = "condition"):
    """Poll `predicate` against a deadline (circus's poll_for); returns its truthy value."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(interval_s)


def pytest_addoption(parser):
    parser.addoption("--update-golden", action="store_true", help="rewrite tests/data/recordings/*.golden.json")


@pytest.fixture
def update_golden(request) -> bool:
    return request.config.getoption("--update-golden")


@pytest.fixture
def start_pipeline(run_dir):
    """Starts `python supervisor.py` (tests/integration/harness.py); stops it and its stages after."""
    from tests.integration.harness import PipelineProcess

    started: list[PipelineProcess] = []

    def start(config: dict, *args: str, env: dict | None = None) -> PipelineProcess:
        started.append(PipelineProcess(run_dir, config, *args, env=env))
        return started[-1]

    yield start
    for pipeline in started:
        pipeline.stop()
