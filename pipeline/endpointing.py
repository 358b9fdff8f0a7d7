"""When a turn is over: what the speculative decode says of the text, and how long to wait.

Pure: the worker judges the text it decoded during the first ~120 ms of silence (`judge_turn`)
and, when that text ends a sentence, asks Smart Turn v3.2 (an audio end-of-turn model) too; the
VAD weighs both (`weigh`) and turns the verdict into how much more silence closes the utterance
(`close_after_ms`):

    finished sentence, decoder sure, Smart Turn agrees -> close now (the final is already decoded)
    finished sentence, decoder unsure or Smart Turn not -> vad.hold_silence_ms (longer than a hesitation)
      ... unless Smart Turn is vad.turn_model_sure_probability sure (off by default) -> close now
    unfinished text                                     -> vad.max_silence_ms (a hesitation is not the end)
    no verdict yet                                      -> wait up to vad.max_silence_ms for one
    no speculation at all                               -> vad.min_silence_ms, the fixed rule

A text is finished when it ends a sentence (. ! ?) on a word a French (or English) sentence
can end on, and does not trail off (« La conférence est maintenant... »: Whisper's ellipsis); the
decoder was sure when the last segment's average log-probability is at least
vad.turn_min_logprob. Whisper punctuates what it hears, and writes a full stop at many
mid-sentence pauses too; a pause after « le », « de », « et » ... is the common hesitation.
Why both signals (`python -m bench.endpoint_study`, 40 Debian prompts, offline): of 40
mid-sentence cuts the text was finished and sure for 8, and Smart Turn agreed for 1 of them; of
40 real ends, 24 were finished and sure, and Smart Turn agreed for 20.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

SENTENCE_END = re.compile(r"[.!?…]+[\"»)\s]*$")
TRAILING_OFF = re.compile(r"(\.\.\.|…)[\"»)\s]*$")  # how Whisper writes a voice that stops mid-thought
# Words a sentence does not end on: articles, prepositions, conjunctions, clitic pronouns.
CANNOT_END: dict[str, frozenset[str]] = {
    "fr": frozenset("""le la les l' un une des du de d' au aux à et ou mais donc car ni que qu' qui quoi dont
        pour par avec sans sur sous dans en vers chez entre je j' tu il elle on nous vous ils elles me m' te
        t' se s' ne n' ce c' cet cette ces mon ma mes ton ta tes son sa ses notre nos votre vos leur leurs
        si comme quand lorsque parce puisque très plus moins""".split()),
    "en": frozenset("""the a an and or but so of to in on at for with from by as that which who whose
        i you he she we they my your his her our their is are was were be if because than very""".split()),
}


DOUBTED = frozenset({"unsure", "turn_model_doubts"})  # finished-looking text that waits hold_silence_ms


@dataclass(frozen=True)
class TurnVerdict:
    complete: bool
    reason: str  # why: a log field and a metric label


def judge_turn(text: str, language: str, is_speech: bool) -> TurnVerdict:
    """Does the text decoded so far end the speaker's turn?"""
    if not is_speech:
        return TurnVerdict(True, "non_speech")  # a cough or a click: nothing to wait for
    stripped = text.strip()
    if not SENTENCE_END.search(stripped):
        return TurnVerdict(False, "no_sentence_end")
    if TRAILING_OFF.search(stripped):
        return TurnVerdict(False, "trails_off")
    words = re.findall(r"[\w'’-]+", stripped.lower().replace("’", "'"))
    last = words[-1] if words else ""
    if last in CANNOT_END.get(language, frozenset()) or last.endswith("'"):
        return TurnVerdict(False, "ends_on_function_word")
    return TurnVerdict(True, "sentence_end")


def weigh(verdict: TurnVerdict, end_logprob: float, min_logprob: float,
          turn_probability: float | None = None, min_turn_probability: float = 0.5,
          sure_turn_probability: float | None = None) -> TurnVerdict:
    """A finished-looking text closes the turn at once only if the decoder was sure of its end and
    the turn model (when it was asked: `turn_probability` not None) hears a finished turn too; or,
    the decoder unsure, if the turn model is at least `sure_turn_probability` sure (None: never)."""
    if not verdict.complete or verdict.reason == "non_speech":
        return verdict
    if end_logprob < min_logprob:
        turn_model_sure = (turn_probability is not None and sure_turn_probability is not None
                           and turn_probability >= sure_turn_probability)
        return TurnVerdict(True, "turn_model_sure" if turn_model_sure else "unsure")
    if turn_probability is not None and turn_probability < min_turn_probability:
        return TurnVerdict(True, "turn_model_doubts")
    return verdict


def close_after_ms(min_silence_ms: int, hold_silence_ms: int, max_silence_ms: int, speculated: bool,
                   verdict: TurnVerdict | None) -> int:
    """How much trailing silence closes the open utterance now (0 = close at once)."""
    if not speculated:
        return min_silence_ms
    if verdict is None or not verdict.complete:
        return max_silence_ms
    return hold_silence_ms if verdict.reason in DOUBTED else 0
