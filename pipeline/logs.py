"""structlog set-up on stderr (stdout carries transcripts only): coloured, readable lines on a
terminal, JSON lines for programs (stderr not a terminal, or LOG_FORMAT_ENV=json, which the
supervisor's `--log-format` sets for every stage it starts)."""

from __future__ import annotations

import logging
import os
import sys

import structlog

_STATIC: dict = {}  # fields on every line of this process: stage, pid, restart_count
LOG_FORMAT_ENV = "LUXA_LOG_FORMAT"  # auto | console | json
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


def console_logs() -> bool:
    """Readable lines rather than JSON: `--log-format console`, or auto and stderr is a terminal."""
    chosen = os.environ.get(LOG_FORMAT_ENV, "auto")
    return chosen == "console" or (chosen == "auto" and sys.stderr.isatty())


def configure_logging(stage: str, level: str = "info", json: bool | None = None, restart_count: int = 0,
                      console_level: str | None = None) -> None:
    """Call once in each process's main(), after spawning (cached loggers do not pickle).
    `console_level`: the level when the lines are for a person (logging.console_level)."""
    if json is None:
        json = not console_logs()
    if not json and console_level:
        level = console_level
    renderer = (structlog.processors.JSONRenderer() if json
                else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty()))
    _STATIC.clear()
    _STATIC.update(stage=stage, pid=os.getpid(), restart_count=restart_count)

    def add_process_context(_logger, _name, event: dict) -> dict:
        # Not contextvars: stage calls run in a worker thread, which contextvars would not reach.
        for key, value in _STATIC.items():
            event.setdefault(key, value)
        return event

    structlog.configure(
        processors=[
            add_process_context,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        # One write per line (message + newline): lines from several processes sharing stderr never interleave.
        logger_factory=structlog.WriteLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )


def get_logger(**context) -> structlog.BoundLogger:
    return structlog.get_logger().bind(**context)


def bind_process_context(**fields) -> None:
    """Change a process-wide field later (a spare learns its restart count when it is activated)."""
    _STATIC.update(fields)
