"""The run dir: ours alone (lstat, owner, mode), one supervisor at a time, state kept across a crash."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from pipeline import topology
from pipeline.durable import Cursor, IdLog, Spool
from pipeline.rundir import RunDirError, RunDirLock, check_private, clear_after_clean_stop, leftover_state

NOBODY = 65534


def test_a_missing_run_dir_is_created_private(tmp_path):
    run_dir = tmp_path / "luxa-stt-1000"
    check_private(run_dir)
    assert run_dir.is_dir() and (run_dir.stat().st_mode & 0o777) == 0o700


def test_a_symlink_is_refused_even_to_a_private_dir_of_ours(tmp_path):
    target = tmp_path / "elsewhere"
    target.mkdir(mode=0o700)
    link = tmp_path / "luxa-stt-1000"
    link.symlink_to(target)
    with pytest.raises(RunDirError, match="symbolic link"):
        check_private(link)


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a dir to another user needs root")
def test_a_dir_created_first_by_another_user_is_refused(tmp_path):
    planted = tmp_path / "luxa-stt-0"
    planted.mkdir(mode=0o700)
    os.chown(planted, NOBODY, NOBODY)
    with pytest.raises(RunDirError, match=f"belongs to uid {NOBODY}"):
        check_private(planted)


def test_a_dir_others_can_write_to_is_refused_with_the_fix(tmp_path):
    shared = tmp_path / "luxa-stt-1000"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(RunDirError, match="chmod 700"):
        check_private(shared)


def test_a_second_supervisor_on_a_live_run_dir_is_refused_until_the_first_is_gone(tmp_path):
    # The holder is another process, killed without any cleanup: the kernel releases its lock.
    holder = subprocess.Popen([sys.executable, "-c", "import sys; from pathlib import Path; "
                               "from pipeline.rundir import RunDirLock; RunDirLock(Path(sys.argv[1])); "
                               "print('locked', flush=True); sys.stdin.read()", str(tmp_path)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunDirError, match=f"another supervisor \\(pid {holder.pid}\\)"):
            RunDirLock(tmp_path)
    finally:
        holder.kill()
        holder.wait()
    RunDirLock(tmp_path).release()


def fill_state(run_dir, spooled: int) -> None:
    spool = Spool(topology.vad_spool(run_dir))
    for n in range(spooled):
        spool.put(f"utt-{n}", b"x")
    spool.put(topology.SPOOL_END_OF_STREAM, b"")
    ids = IdLog(topology.published_ids(run_dir), 10)
    ids.add("utt-a")
    ids.close()
    Cursor(topology.capture_cursor(run_dir)).save({"seq": 7})


def test_a_clean_stop_with_nothing_pending_clears_the_state(tmp_path):
    fill_state(tmp_path, spooled=0)
    assert leftover_state(tmp_path) == {"spooled": 0, "end_of_stream": 1, "published_ids": 1, "cursor": 1}
    assert clear_after_clean_stop(tmp_path)
    assert not any(leftover_state(tmp_path).values())


def test_a_drain_that_left_utterances_pending_keeps_all_the_state_for_the_next_start(tmp_path):
    fill_state(tmp_path, spooled=2)
    assert not clear_after_clean_stop(tmp_path)
    assert leftover_state(tmp_path) == {"spooled": 2, "end_of_stream": 1, "published_ids": 1, "cursor": 1}


def test_a_second_lanes_state_is_kept_while_it_has_pending_utterances_and_cleared_with_the_rest(tmp_path):
    fill_state(tmp_path, spooled=0)
    Spool(topology.vad_spool(tmp_path, 1)).put("utt-lane-1", b"x")
    Cursor(topology.capture_cursor(tmp_path, 1)).save({"seq": 3})
    assert leftover_state(tmp_path)["spooled"] == 1 and not clear_after_clean_stop(tmp_path)
    Spool(topology.vad_spool(tmp_path, 1)).remove("utt-lane-1")
    assert clear_after_clean_stop(tmp_path)
    assert not topology.capture_cursor(tmp_path, 1).exists() and not any(leftover_state(tmp_path).values())


def test_state_stores_named_in_metrics_are_the_run_dirs_files(tmp_path):
    from pipeline.metrics import STATE_STORES

    assert STATE_STORES == tuple(p.name for p in topology.state_paths(tmp_path))
