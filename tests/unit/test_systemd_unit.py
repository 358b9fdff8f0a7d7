"""The shipped systemd unit agrees with the exit-code contract and the supervisor's command line."""

import configparser
import shlex

from pipeline.exitcodes import ExitCode
from pipeline.harness.pipeline_process import ROOT
from supervisor import parse_args

UNIT = ROOT / "examples" / "systemd" / "luxa-stt.service"


def test_the_unit_restarts_on_failure_but_never_on_a_refused_config():
    unit = configparser.ConfigParser(interpolation=None, strict=False)
    unit.read(UNIT)
    service = unit["Service"]
    assert service["Restart"] == "on-failure"
    assert service["RestartPreventExitStatus"] == str(int(ExitCode.CONFIG_ERROR))
    assert service["KillSignal"] == "SIGTERM"  # the VAD drains on SIGTERM
    assert service["KillMode"] == "process"  # a crashed supervisor's stages live on for its restart to adopt
    argv = shlex.split(service["ExecStart"])
    assert argv[1] == "supervisor.py"
    parse_args(argv[2:])  # the options it passes exist
