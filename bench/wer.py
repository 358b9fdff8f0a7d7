"""Word error rate with a French-aware normalisation (case, punctuation, apostrophes, hyphens)."""

from __future__ import annotations

import re
import unicodedata


def words(text: str) -> list[str]:
    text = unicodedata.normalize("NFC", text.lower()).replace("’", "'")
    text = re.sub(r"[-']", " ", text)
    return re.findall(r"\w+", text)


def edit_distance(ref: list[str], hyp: list[str]) -> int:
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[-1]


def corpus_wer(pairs: list[tuple[str, str]]) -> float:
    """Total edits over total reference words, as a percentage."""
    edits = sum(edit_distance(words(r), words(h)) for r, h in pairs)
    return 100.0 * edits / max(1, sum(len(words(r)) for r, _ in pairs))
