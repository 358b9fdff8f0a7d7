"""The shared `main()` of every stage: arguments, logging, config snapshot, runner."""

from __future__ import annotations

import argparse
import atexit
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Callable

from pipeline.config import PipelineConfig, load_config_or_exit
from pipeline.logs import configure_logging, get_logger
from pipeline.runner import Stage, StageRunner
from pipeline.topology import lane_stage

StageFactory = Callable[[PipelineConfig, argparse.Namespace], Stage]


def stage_main(name: str, make_stage: StageFactory, extra_args: Callable | None = None,
               name_of: Callable[[argparse.Namespace], str] | None = None) -> None:
    """Parse the common flags, build the stage and run it live or on a recording.
    `name_of`: the process's stage name from its flags (default: `name`, `name.k` for lane k)."""
    parser = argparse.ArgumentParser(prog=f"python -m stages.{name}", description=f"LUXA {name} stage")
    parser.add_argument("--config", help="config file (the supervisor passes its resolved snapshot)")
    parser.add_argument("--record", type=Path, help="save every input frame to this file")
    parser.add_argument("--replay", type=Path, help="feed recorded input frames instead of sockets")
    parser.add_argument("--out", type=Path, help="with --replay (or a source stage): write output frames here")
    parser.add_argument("--restart-count", type=int, default=0)
    parser.add_argument("--lane", type=int, default=0,
                        help="capture, vad: which microphone of `audio.device` (a list) this process serves")
    parser.add_argument("--standby", action="store_true",
                        help="a spare: preload, then wait for the supervisor's Activate before serving")
    if extra_args:
        extra_args(parser)
    args = parser.parse_args()
    cfg = load_config_or_exit(args.config)
    if args.out:  # offline: durable state goes to a throw-away dir, never the live pipeline's
        scratch = tempfile.mkdtemp(prefix=f"luxa-{name}-replay-")
        atexit.register(shutil.rmtree, scratch, True)
        cfg = cfg.model_copy(update={"run_dir": scratch})
    stage_name = args.stage_name = name_of(args) if name_of else lane_stage(name, args.lane)
    configure_logging(stage_name, cfg.logging.level, restart_count=args.restart_count,
                      console_level=cfg.logging.console_level)
    stage = make_stage(cfg, args)
    sup = cfg.supervisor
    runner = StageRunner(stage, sup.heartbeat_interval_s, sup.drain_timeout_s, record_path=args.record,
                         spare_heartbeat_interval_s=sup.spare_heartbeat_interval_s, orphan_grace_s=sup.orphan_grace_s)
    try:
        if args.out:
            code = runner.replay(args.replay, args.out)
        else:
            run_dir = cfg.resolved_run_dir()
            code = runner.run(run_dir, standby=args.standby)
    except KeyboardInterrupt:
        code = 0
    except Exception:
        get_logger().exception("stage_crashed")
        code = 1
    sys.exit(int(code))
