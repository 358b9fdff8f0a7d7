"""A restarted supervisor adopts what its crashed predecessor left running; an orphan nobody
adopts exits (pipeline/adoption.py, pipeline/ownership.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading

import pytest

from pipeline import frames
from pipeline.adoption import AdoptedProcess, StageRecord, start_time
from pipeline.exitcodes import EXIT_STATUS_UNKNOWN, describe
from pipeline.logs import get_logger
from pipeline.ownership import Ownership


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def ownership(parent: list[int], clock: Clock, grace_s: float = 10.0) -> Ownership:
    return Ownership(grace_s, get_logger(), clock=clock, parent=lambda: parent[0])


@pytest.fixture
def sleeper():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc
    proc.kill()
    proc.wait()


def test_a_stage_whose_parent_lives_ignores_other_supervisors():
    parent, clock = [100], Clock()
    owned = ownership(parent, clock)
    clock.now = 1e6
    assert owned.exit_reason() is None
    assert owned.on_owned(frames.Owned(555, [])) is None  # its parent's word only


def test_an_orphan_serves_through_the_grace_then_exits_unless_adopted():
    parent, clock = [100], Clock()
    owned = ownership(parent, clock)
    parent[0] = 1  # the supervisor died: reparented
    assert owned.exit_reason() is None and owned.orphan
    clock.now = 10.0
    assert owned.exit_reason() is None
    clock.now = 10.5
    assert "no supervisor adopted" in owned.exit_reason()


def test_an_adopted_orphan_serves_while_its_adopter_lives_and_gets_a_new_grace_when_it_dies(sleeper):
    parent, clock = [100], Clock()
    owned = ownership(parent, clock)
    parent[0] = 1
    assert owned.exit_reason() is None
    clock.now = 5.0
    assert owned.on_owned(frames.Owned(sleeper.pid, [os.getpid()])) is None and owned.owner == sleeper.pid
    clock.now = 1e6  # no frame for ages (a stage busy in a long model call reads none): the adopter lives
    assert owned.exit_reason() is None
    sleeper.kill()
    sleeper.wait()
    assert owned.exit_reason() is None and owned.owner is None  # gone: a new grace begins
    clock.now = 1e6 + 10.5
    assert "no supervisor adopted" in owned.exit_reason()


def test_an_orphan_a_new_supervisor_does_not_name_exits_at_once():
    parent, clock = [100], Clock()
    owned = ownership(parent, clock)
    parent[0] = 1
    assert "took over without this process" in owned.on_owned(frames.Owned(555, [os.getpid() + 1]))


def test_the_record_names_live_processes_under_the_same_config_only(tmp_path, sleeper):
    record = StageRecord(tmp_path, "config A")
    record.save(3, "transcribe_cpu", [("vad", sleeper.pid, False, 2), ("sink", sleeper.pid, True, 0)])
    loaded, strangers = StageRecord(tmp_path, "config A").load()
    assert strangers == [] and (loaded.epoch, loaded.active, loaded.supervisor_pid) == (3, "transcribe_cpu", os.getpid())
    assert [(s.name, s.pid, s.standby, s.restarts) for s in loaded.survivors] == [
        ("vad", sleeper.pid, False, 2), ("sink", sleeper.pid, True, 0)]

    assert StageRecord(tmp_path, "config B").load() == (None, [sleeper.pid, sleeper.pid])  # never adopted


def test_a_recycled_pid_or_a_dead_process_is_not_adopted(tmp_path, sleeper):
    record = StageRecord(tmp_path, "cfg")
    record.save(1, None, [("vad", sleeper.pid, False, 0)])
    data = json.loads(record.path.read_text())
    data["processes"][0]["start"] += 1  # the same pid, another process
    record.path.write_text(json.dumps(data))
    assert record.load()[0].survivors == []
    record.path.write_text("{not json")
    assert record.load() == (None, [])
    record.path.unlink()
    assert record.inherit(get_logger()) is None


def test_the_record_is_written_only_when_it_changes(tmp_path, sleeper):
    record = StageRecord(tmp_path, "cfg")
    record.save(1, None, [("vad", sleeper.pid, False, 0)])
    record.path.unlink()
    record.save(1, None, [("vad", sleeper.pid, False, 0)])
    assert not record.path.exists()  # nothing changed: no write (the loop calls it every pass)
    record.save(2, None, [("vad", sleeper.pid, False, 0)])
    assert record.path.exists()


def test_an_adopted_process_is_signalled_through_its_pidfd_and_its_exit_wakes_the_supervisor(sleeper):
    exited = threading.Event()
    adopted = AdoptedProcess(sleeper.pid, exited.set)
    assert adopted.poll() is None and start_time(sleeper.pid) is not None
    with pytest.raises(subprocess.TimeoutExpired):
        adopted.wait(0.01)
    adopted.send_signal(signal.SIGTERM)
    assert adopted.wait(30) == EXIT_STATUS_UNKNOWN  # not our child: its status is not ours to read
    assert exited.wait(5) and describe(adopted.poll()) == "exited_status_unknown"
    adopted.kill()  # after its exit: nothing is sent to whatever gets the pid next
