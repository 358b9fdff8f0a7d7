"""The stdout views: a person's live terminal line, and JSON lines for programs."""

import io
import json

import pytest

from pipeline import frames
from pipeline.terminal import CLEAR_LINE, TranscriptView
from supervisor import parse_args, transcript_view


def transcript(text: str, partial: bool = False) -> frames.Transcript:
    return frames.Transcript("u1", text, "fr", [], "base", "cpu", "transcribe_cpu", 2.5, 0.2, 0.08, True,
                             t_closed_wall_s=100.0, t_published_wall_s=100.052, is_partial=partial)


def test_live_view_rewrites_the_partial_in_place_and_commits_the_final_on_its_own_line():
    out = io.StringIO()
    view = TranscriptView("live", out)
    view.partial(transcript("Bonjour", partial=True))
    view.partial(transcript("Bonjour à tous", partial=True))
    assert "\n" not in out.getvalue() and out.getvalue().count(CLEAR_LINE) == 2
    view.final(transcript("Bonjour à tous."))
    last = out.getvalue().split(CLEAR_LINE)[-1]
    assert last.endswith("\n") and "Bonjour à tous." in last and "52 ms" in last and "2.5 s" in last


def test_json_view_prints_finals_exactly_as_programs_read_them_and_no_partials():
    out = io.StringIO()
    view = TranscriptView("json", out)
    view.partial(transcript("Bonjour", partial=True))
    view.final(transcript("Bonjour à tous."))
    lines = out.getvalue().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["text"] == "Bonjour à tous."


def test_an_unknown_view_is_refused():
    with pytest.raises(ValueError, match="live or json"):
        TranscriptView("html")


def test_the_supervisor_prints_json_unless_stdout_is_a_terminal(monkeypatch):
    monkeypatch.setattr("sys.stdout.isatty", lambda: False)
    assert transcript_view(parse_args([])) == "json"
    monkeypatch.setattr("sys.stdout.isatty", lambda: True)
    assert transcript_view(parse_args([])) == "live"
    assert transcript_view(parse_args(["--json"])) == "json"
    assert transcript_view(parse_args(["--quiet"])) is None


@pytest.mark.parametrize("chosen, is_json", [("json", True), ("console", False)])
def test_log_format_chosen_by_the_supervisor_holds_in_every_stage(monkeypatch, capsys, chosen, is_json):
    from pipeline.logs import LOG_FORMAT_ENV, configure_logging, get_logger

    import structlog

    monkeypatch.setenv(LOG_FORMAT_ENV, chosen)
    try:
        configure_logging("vad")
        get_logger().info("stage_ready", seq=3)
    finally:
        structlog.reset_defaults()  # this process's later tests log as before
    line = capsys.readouterr().err.strip()
    assert line.startswith("{") == is_json and "stage_ready" in line and "seq" in line
