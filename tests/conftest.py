"""Shared fixtures: data paths, a fake clock, short ipc run dirs, log capture, a pipeline starter.

What tests share with the benchmarks (starting a pipeline, waiting on a condition, ...) lives in
`pipeline/harness/`, not here."""

from __future__ import annotations

import shutil
import tempfile
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


def pytest_addoption(parser):
    parser.addoption("--update-golden", action="store_true", help="rewrite tests/data/recordings/*.golden.json")


@pytest.fixture
def update_golden(request) -> bool:
    return request.config.getoption("--update-golden")


@pytest.fixture
def start_pipeline(run_dir):
    """Starts `python supervisor.py` (tests/integration/harness.py); stops it and its stages after."""
    from pipeline.harness.pipeline_process import PipelineProcess

    started: list[PipelineProcess] = []

    def start(config: dict, *args: str, env: dict | None = None) -> PipelineProcess:
        started.append(PipelineProcess(run_dir, config, *args, env=env))
        return started[-1]

    yield start
    for pipeline in started:
        pipeline.stop()
