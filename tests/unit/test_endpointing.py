"""Is the turn over? The rule the worker applies to its speculative text, and the wait it sets."""

import pytest

from pipeline.config import VadConfig
from pipeline.endpointing import EndSignals, TurnVerdict, close_after_ms, judge_turn, weigh

CFG = VadConfig()  # turn_min_logprob -0.4, turn_min_end_probability 0.9, turn_model_min_probability 0.5


@pytest.mark.parametrize("text, complete, reason", [
    ("Cette conférence est pleine.", True, "sentence_end"),
    ("Vous êtes maintenant en ligne !", True, "sentence_end"),
    ("Pouvez-vous répéter ?", True, "sentence_end"),
    ("Veuillez vérifier le numéro et", False, "no_sentence_end"),
    ("Veuillez vérifier le", False, "no_sentence_end"),
    ("Toutes les lignes sont occupées pour l'", False, "no_sentence_end"),
    ("Veuillez composer le.", False, "ends_on_function_word"),  # Whisper's full stop at a hesitation
    ("Appuyez sur la touche dièse pour.", False, "ends_on_function_word"),
    ("C'est l'.", False, "ends_on_function_word"),
])
def test_french_sentence_ends(text, complete, reason):
    assert judge_turn(text, "fr", is_speech=True) == TurnVerdict(complete, reason)


def test_non_speech_has_nothing_to_wait_for():
    assert judge_turn("", "fr", is_speech=False) == TurnVerdict(True, "non_speech")


def test_english_function_words_too():
    assert judge_turn("I would like to.", "en", True).complete is False
    assert judge_turn("Turn on the lights.", "en", True).complete is True


def test_the_wait_each_verdict_sets():
    done, unfinished = TurnVerdict(True, "sentence_end"), TurnVerdict(False, "no_sentence_end")
    assert close_after_ms(400, 750, 1000, speculated=False, verdict=None) == 400  # the fixed rule
    assert close_after_ms(400, 750, 1000, speculated=True, verdict=None) == 1000  # waiting for a verdict
    assert close_after_ms(400, 750, 1000, speculated=True, verdict=unfinished) == 1000
    assert close_after_ms(400, 750, 1000, speculated=True, verdict=done) == 0
    assert close_after_ms(400, 750, 1000, speculated=True, verdict=TurnVerdict(True, "unsure")) == 750
    assert close_after_ms(400, 750, 1000, speculated=True, verdict=TurnVerdict(True, "turn_model_doubts")) == 750
    assert close_after_ms(400, 750, 1000, speculated=True, verdict=TurnVerdict(True, "non_speech")) == 0


def test_a_full_stop_the_decoder_was_unsure_of_does_not_end_the_turn():
    done = TurnVerdict(True, "sentence_end")
    assert weigh(done, EndSignals(end_logprob=-0.2), CFG) == done
    assert weigh(done, EndSignals(end_logprob=-0.6), CFG) == TurnVerdict(True, "unsure")
    assert weigh(TurnVerdict(True, "non_speech"), EndSignals(-2.0), CFG).complete  # nothing to be sure of


def test_a_full_stop_whisper_was_sure_of_ends_the_turn_whatever_the_average_logprob():
    done = TurnVerdict(True, "sentence_end")
    assert weigh(done, EndSignals(-0.6, end_probability=0.95), CFG) == done
    assert weigh(done, EndSignals(-0.6, end_probability=0.8), CFG) == TurnVerdict(True, "unsure")
    assert weigh(done, EndSignals(-0.6, end_probability=None), CFG) == TurnVerdict(True, "unsure")  # not scored
    off = VadConfig(turn_min_end_probability=None)
    assert weigh(done, EndSignals(-0.6, end_probability=0.99), off) == TurnVerdict(True, "unsure")
    sure_but_doubted = EndSignals(-0.6, end_probability=0.95, turn_probability=0.2)
    assert weigh(done, sure_but_doubted, CFG) == TurnVerdict(True, "turn_model_doubts")
    unfinished = TurnVerdict(False, "ends_on_function_word")
    assert weigh(unfinished, EndSignals(-0.1, 0.99, 0.99), CFG) == unfinished  # no signal finishes a text


def test_a_sure_full_stop_the_turn_model_doubts_waits():
    done = TurnVerdict(True, "sentence_end")
    assert weigh(done, EndSignals(-0.2, turn_probability=0.9), CFG) == done
    assert weigh(done, EndSignals(-0.2, turn_probability=0.2), CFG) == TurnVerdict(True, "turn_model_doubts")
    assert weigh(done, EndSignals(-0.2, turn_probability=None), CFG) == done  # not asked: the text alone decides
    text_alone = VadConfig(turn_model_min_probability=0.0)
    assert weigh(done, EndSignals(-0.2, turn_probability=0.2), text_alone) == done
    unfinished = TurnVerdict(False, "ends_on_function_word")
    assert weigh(unfinished, EndSignals(-0.2, turn_probability=0.99), CFG) == unfinished  # audio never finishes a text


def test_a_hint_says_not_measured_with_minus_one():
    assert EndSignals.from_hint(-0.3, -1.0, -1.0) == EndSignals(-0.3, None, None)
    assert EndSignals.from_hint(-0.3, 0.91234, 0.0) == EndSignals(-0.3, 0.912, 0.0)
