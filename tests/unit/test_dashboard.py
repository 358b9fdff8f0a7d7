"""The shipped Grafana dashboard only queries metrics the pipeline really exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client import Histogram

from pipeline import metrics

DASHBOARD = Path(__file__).resolve().parents[2] / "examples" / "grafana" / "luxa-speech.json"


def dashboard_exprs() -> list[str]:
    return [t["expr"] for p in json.loads(DASHBOARD.read_text())["panels"] for t in p["targets"]]


def exported_names() -> set[str]:
    names = set()
    for metric in vars(metrics).values():
        if hasattr(metric, "_name") and hasattr(metric, "_type"):
            base = metric._name + ("_total" if metric._type == "counter" else "")
            names.add(base)
            if isinstance(metric, Histogram):
                names |= {f"{metric._name}_bucket", f"{metric._name}_count", f"{metric._name}_sum"}
    return names


def test_every_dashboard_query_names_an_exported_metric():
    used = {name for expr in dashboard_exprs() for name in re.findall(r"\bstt_[a-z_]+", expr)}
    assert used and used <= exported_names(), used - exported_names()


def test_the_dashboard_shows_what_an_operator_asks_first():
    exprs = " ".join(dashboard_exprs())
    for needed in ("histogram_quantile(0.95", "stt_errors_total", "stt_breaker_state", "stt_active_worker",
                   "stt_stage_restarts_total", "stt_queue_depth", "stt_vram_usage_bytes", "stt_transcriptions_total"):
        assert needed in exprs, needed
