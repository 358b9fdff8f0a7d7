"""What was said against what was published: a clean run's finals are the reference.

Counting utterances the VAD closed cannot see speech that never became an utterance (a VAD that
died mid-sentence). So the chaos run is compared, by words, with a clean run of the same audio:
both runs' finals are joined into one word sequence each and aligned (difflib); a reference
utterance is *lost* when most of its words found no counterpart, and a run's final is a
*duplicate* when most of its words found none either but they repeat, in order, words of the
reference it sits next to (text published twice, under another id or split differently).
Different cut points between the runs move words between finals, which the joined alignment
ignores; the model deciding differently on a differently cut utterance shows as a few
unmatched words, below the "most of its words" bar.
"""

from __future__ import annotations

from dataclasses import dataclass
from difflib import SequenceMatcher

from bench.wer import words

MOSTLY = 0.5
NEAR_WORDS = 40  # a duplicate repeats words from this close to where it sits in the reference


@dataclass(frozen=True)
class SaidReport:
    lost: list[str]        # reference finals mostly missing from the run
    duplicated: list[str]  # run finals whose words were already published


def _spans(texts: list[str]) -> tuple[list[str], list[tuple[int, int]]]:
    joined, spans = [], []
    for text in texts:
        tokens = words(text)
        spans.append((len(joined), len(joined) + len(tokens)))
        joined += tokens
    return joined, spans


def compare_said(reference: list[str], run: list[str]) -> SaidReport:
    """`reference`, `run`: final texts in publication order."""
    ref_words, ref_spans = _spans(reference)
    run_words, run_spans = _spans(run)
    ref_hit, run_to_ref = [False] * len(ref_words), {}
    for block in SequenceMatcher(None, ref_words, run_words, autojunk=False).get_matching_blocks():
        for k in range(block.size):
            ref_hit[block.a + k] = True
            run_to_ref[block.b + k] = block.a + k
    lost = [text for text, (a, b) in zip(reference, ref_spans) if b > a and sum(ref_hit[a:b]) < MOSTLY * (b - a)]
    duplicated = [text for text, (a, b) in zip(run, run_spans)
                  if b > a and sum(i in run_to_ref for i in range(a, b)) < MOSTLY * (b - a)
                  and _repeats_nearby(run_words[a:b], ref_words, _reference_position(run_to_ref, a))]
    return SaidReport(lost, duplicated)


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
