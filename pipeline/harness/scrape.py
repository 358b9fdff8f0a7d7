"""Reading the supervisor's HTTP endpoint the way a scraper does."""

from __future__ import annotations

import urllib.error
import urllib.request

from prometheus_client.parser import text_string_to_metric_families


def get(url: str) -> tuple[int, bytes]:
    """(status, body), for error statuses too."""
    try:
        with urllib.request.urlopen(url, timeout=10) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def samples(text: str) -> dict[tuple, float]:
    """Prometheus text -> {(sample name, sorted label items): value}."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(metrics: dict, name: str, **labels) -> float:
    """Sum of the samples of `name` whose labels include `labels`."""
    return sum(v for (n, l), v in metrics.items() if n == name and set(labels.items()) <= set(l))
