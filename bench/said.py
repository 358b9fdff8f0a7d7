"""What was said against what was published: a clean run's finals are the reference.

Counting utterances the VAD closed cannot see speech that never became an utterance (a VAD that
died mid-sentence). So the chaos run is compared, by words, with a clean run of the same audio:
both runs' finals are joined into one word sequence each and aligned (the fewest edits, as for
WER: difflib's longest-block matching pairs the wrong laps of a looped recording); a reference
utterance is *lost* when most of its words found no counterpart, and a run's final is a
*duplicate* when most of its words found none either but they repeat, in order, words of the
reference it sits next to (text published twice, under another id or split differently).
Different cut points between the runs move words between finals, which the joined alignment
ignores; the model deciding differently on a differently cut utterance shows as a few
unmatched words, below the "most of its words" bar. A short final can fall below that bar that
way too (« au poste » heard as « Oubaste »): a lost final whose place in the run holds words of
its own, matching nothing, is also listed as *decoded differently*, so a reader can tell speech
that was heard and misheard from speech that never came out at all.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from difflib import SequenceMatcher

import numpy as np

from bench.wer import words

MOSTLY = 0.5
NEAR_WORDS = 40  # a duplicate repeats words from this close to where it sits in the reference


@dataclass(frozen=True)
class SaidReport:
    lost: list[str]        # reference finals mostly missing from the run
    duplicated: list[str]  # run finals whose words were already published
    decoded_differently: list[str] = dataclasses.field(default_factory=list)  # of `lost`: other words in their place


def _spans(texts: list[str]) -> tuple[list[str], list[tuple[int, int]]]:
    joined, spans = [], []
    for text in texts:
        tokens = words(text)
        spans.append((len(joined), len(joined) + len(tokens)))
        joined += tokens
    return joined, spans


def compare_said(reference: list[str], run: list[str], stopped_early: bool = False) -> SaidReport:
    """`reference`, `run`: final texts in publication order. `stopped_early`: the run was stopped
    partway through what the reference says (a looped recording, stopped once the kills were
    done): reference finals after the last one it mostly said were never played, not lost."""
    ref_words, ref_spans = _spans(reference)
    run_words, run_spans = _spans(run)
    run_to_ref = align(ref_words, run_words, run_is_prefix=stopped_early)
    ref_hit = [False] * len(ref_words)
    for i in run_to_ref.values():
        ref_hit[i] = True
    missing = [b > a and sum(ref_hit[a:b]) < MOSTLY * (b - a) for a, b in ref_spans]
    if stopped_early:
        said = [i for i, gone in enumerate(missing) if not gone and ref_spans[i][1] > ref_spans[i][0]]
        missing = missing[:said[-1] + 1] if said else []
    lost = [text for text, gone in zip(reference, missing) if gone]
    heard_instead = _unmatched_by_position(run_to_ref, len(run_words))
    decoded_differently = [text for text, gone, (a, b) in zip(reference, missing, ref_spans)
                           if gone and any(a <= position <= b for position in heard_instead)]
    duplicated = [text for text, (a, b) in zip(run, run_spans)
                  if b > a and sum(i in run_to_ref for i in range(a, b)) < MOSTLY * (b - a)
                  and _repeats_nearby(run_words[a:b], ref_words, _reference_position(run_to_ref, a))]
    return SaidReport(lost, duplicated, decoded_differently)


def _unmatched_by_position(run_to_ref: dict[int, int], run_length: int) -> list[int]:
    """For every run word matching nothing, where it sits in the reference (`_reference_position`)."""
    positions, after = [], 0
    for j in range(run_length):
        if j in run_to_ref:
            after = run_to_ref[j] + 1
        else:
            positions.append(after)
    return positions


def align(ref: list[str], run: list[str], run_is_prefix: bool = False) -> dict[int, int]:
    """run word index -> reference word index, for the equal words of a fewest-edits alignment.
    `run_is_prefix`: the run is aligned with the reference's best-fitting beginning (what was not
    played costs nothing). Row by row in numpy (an insertion chain is a running minimum),
    directions kept as bytes."""
    n, m = len(ref), len(run)
    vocab: dict[str, int] = {}
    ref_ids = np.array([vocab.setdefault(w, len(vocab)) for w in ref], dtype=np.int64)
    run_ids = np.array([vocab.setdefault(w, len(vocab)) for w in run], dtype=np.int64)
    cols = np.arange(m + 1)
    row = cols.copy()
    came = np.zeros((n + 1, m + 1), dtype=np.uint8)  # 0 diagonal, 1 from above (deletion), 2 from the left
    came[0, 1:] = 2
    last_column = [m]  # edits of the whole run against each beginning of the reference
    for i in range(1, n + 1):
        diag = row[:-1] + (run_ids != ref_ids[i - 1])
        best = np.concatenate(([row[0] + 1], np.minimum(diag, row[1:] + 1)))
        from_above = np.concatenate(([True], row[1:] + 1 < diag))
        left = np.minimum.accumulate(best - cols) + cols  # D[i][j] = min over k <= j of best[k] + (j - k)
        came[i] = np.where(left < best, 2, np.where(from_above, 1, 0))
        row = np.minimum(left, best)
        last_column.append(int(row[-1]))
    pairs, i, j = {}, (int(np.argmin(last_column)) if run_is_prefix else n), m
    while i or j:
        step = came[i, j]
        if step == 0:
            if run_ids[j - 1] == ref_ids[i - 1]:
                pairs[j - 1] = i - 1
            i, j = i - 1, j - 1
        elif step == 1:
            i -= 1
        else:
            j -= 1
    return pairs


def _reference_position(run_to_ref: dict[int, int], at: int) -> int:
    """Where run word `at` sits in the reference: after the last matched word before it."""
    before = [run_to_ref[i] for i in range(at - 1, -1, -1) if i in run_to_ref][:1]
    return before[0] + 1 if before else 0


def _repeats_nearby(final: list[str], ref_words: list[str], position: int) -> bool:
    """Most of `final`'s words, in order, among the reference words around `position` (the alignment
    may match either copy of a repeated text, so its twin lies before or after)."""
    window = ref_words[max(0, position - NEAR_WORDS):position + NEAR_WORDS]
    matched = sum(b.size for b in SequenceMatcher(None, window, final, autojunk=False).get_matching_blocks())
    return matched >= MOSTLY * len(final)
