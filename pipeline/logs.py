"""structlog set-up: JSON lines on stderr (stdout carries transcripts only)."""

from __future__ import annotations

import logging
import os
import sys

import structlog

_STATIC: dict = {}  # fields on every line of this process: stage, pid, restart_count
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


def configure_logging(stage: str, level: str = "info", json: bool | None = None, restart_count: int = 0) -> None:
    """Call once in each process's main(), after spawning (cached loggers do not pickle)."""
    if json is None:
        json = not sys.stderr.isatty()
    renderer = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
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
