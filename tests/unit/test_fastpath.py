from pipeline.transcription.fastpath import _cut_at_audio_end, _reject_reason, repeats, window_s

TS = 50364  # timestamp_begin of the multilingual tokenizer


def ts(seconds: float) -> int:
    return TS + round(seconds / 0.02)


def test_window_is_the_smallest_bucket_with_two_seconds_of_padding():
    assert window_s(0.5) == 4 and window_s(2.1) == 6 and window_s(4.4) == 8 and window_s(28.9) == 30
    assert window_s(9.5) == 12 and window_s(40) == 30


def test_decoding_is_cut_at_the_first_timestamp_at_the_audio_end():
    ids = [ts(0), 1, 2, ts(1.5), ts(1.5), 3, ts(2.9), 4, 5]
    assert _cut_at_audio_end(ids, TS, audio_s=3.0) == ([1, 2, 3], True)


def test_a_decode_without_closing_timestamp_is_flagged():
    assert _cut_at_audio_end([ts(0), 1, 2, 1, 2], TS, audio_s=3.0) == ([1, 2, 1, 2], False)


def test_repetition_detection():
    assert repeats("cette conférence, cette conférence, cette conf")
    assert repeats("non non non")
    assert not repeats("Vous êtes maintenant en ligne.")
    assert not repeats("nous nous sommes vus")  # a word twice is French, not a loop


def test_guard_reasons():
    assert _reject_reason("bonjour", closed=False, avg_logprob=-0.1) == "no_end_timestamp"
    # Unclosed but stopped by end-of-text after a sentence end, confidently: complete.
    assert _reject_reason("Veuillez patienter.", closed=False, avg_logprob=-0.1, stopped=True) is None
    assert _reject_reason("Veuillez entrer l'hé.", closed=False, avg_logprob=-0.7, stopped=True) == "no_end_timestamp"
    assert _reject_reason("pour ses mots-", closed=False, avg_logprob=-0.2, stopped=True) == "no_end_timestamp"
    assert _reject_reason("Veuillez patienter.", closed=False, avg_logprob=-0.1, stopped=False) == "no_end_timestamp"
    assert _reject_reason("a b a b", closed=True, avg_logprob=-0.1) == "repetition"
    assert _reject_reason("bonjour", closed=True, avg_logprob=-1.5) == "low_logprob"
    assert _reject_reason("bonjour", closed=True, avg_logprob=-0.3) is None
