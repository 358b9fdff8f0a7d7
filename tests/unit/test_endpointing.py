"""Is the turn over? The rule the worker applies to its speculative text, and the wait it sets."""

import pytest

from pipeline.endpointing import TurnVerdict, close_after_ms, judge_turn, weigh


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
    ("La conférence est maintenant...", False, "trails_off"),  # Whisper's ellipsis: the voice stopped mid-thought
    ("Désolé, mais cette boîte va…", False, "trails_off"),
    ("« Pardon… »", False, "trails_off"),
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
    assert close_after_ms(400, 750, 1000, speculated=True, verdict=TurnVerdict(True, "turn_model_sure")) == 0


def test_a_full_stop_the_decoder_was_unsure_of_does_not_end_the_turn():
    done = TurnVerdict(True, "sentence_end")
    assert weigh(done, end_logprob=-0.2, min_logprob=-0.4) == done
    assert weigh(done, end_logprob=-0.6, min_logprob=-0.4) == TurnVerdict(True, "unsure")
    assert weigh(TurnVerdict(True, "non_speech"), -2.0, -0.4).complete  # nothing to be sure of


def test_a_sure_full_stop_the_turn_model_doubts_waits():
    done = TurnVerdict(True, "sentence_end")
    assert weigh(done, -0.2, -0.4, turn_probability=0.9) == done
    assert weigh(done, -0.2, -0.4, turn_probability=0.2) == TurnVerdict(True, "turn_model_doubts")
    assert weigh(done, -0.2, -0.4, turn_probability=None) == done  # not asked: the text alone decides
    assert weigh(done, -0.2, -0.4, turn_probability=0.2, min_turn_probability=0.0) == done
    unfinished = TurnVerdict(False, "ends_on_function_word")
    assert weigh(unfinished, -0.2, -0.4, turn_probability=0.99) == unfinished  # audio never finishes a text


def test_a_turn_model_sure_of_the_end_overrules_an_unsure_decoder_only():
    done = TurnVerdict(True, "sentence_end")
    sure = TurnVerdict(True, "turn_model_sure")
    assert weigh(done, -0.6, -0.4, turn_probability=0.95, sure_turn_probability=0.9) == sure
    assert weigh(done, -0.6, -0.4, turn_probability=0.9, sure_turn_probability=0.9) == sure  # at the threshold
    assert weigh(done, -0.6, -0.4, turn_probability=0.8, sure_turn_probability=0.9) == TurnVerdict(True, "unsure")
    assert weigh(done, -0.6, -0.4, turn_probability=0.99) == TurnVerdict(True, "unsure")  # None: never overrules
    assert weigh(done, -0.6, -0.4, turn_probability=None, sure_turn_probability=0.9) == TurnVerdict(True, "unsure")
    trailing = TurnVerdict(False, "trails_off")
    assert weigh(trailing, -0.6, -0.4, turn_probability=0.99, sure_turn_probability=0.9) == trailing
