"""Counting what was said, against a clean run's finals (bench/said.py)."""

from bench.said import compare_said

REFERENCE = ["Vous êtes maintenant en ligne.", "Toutes les lignes sont occupées pour l'instant.",
             "Veuillez vérifier le numéro et composer de nouveau.", "Cette conférence est pleine."]


def test_the_same_words_cut_differently_are_neither_lost_nor_duplicated():
    run = ["Vous êtes maintenant en ligne. Toutes les lignes", "sont occupées pour l'instant.",
           "Veuillez vérifier le numéro et composé de nouveau.", "Cette conférence est pleine."]
    assert compare_said(REFERENCE, run) == compare_said(REFERENCE, REFERENCE)
    assert not compare_said(REFERENCE, run).lost and not compare_said(REFERENCE, run).duplicated


def test_a_sentence_missing_from_the_run_is_lost():
    run = [REFERENCE[0], "Toutes les", REFERENCE[2], REFERENCE[3]]
    assert compare_said(REFERENCE, run).lost == [REFERENCE[1]]


def test_a_sentence_published_twice_is_a_duplicate_and_not_a_loss():
    run = [REFERENCE[0], REFERENCE[1], REFERENCE[1], REFERENCE[2], REFERENCE[3]]
    report = compare_said(REFERENCE, run)
    assert report.duplicated == [REFERENCE[1]] and not report.lost


def test_an_extra_stray_word_is_neither():
    run = [REFERENCE[0], "euh", *REFERENCE[1:]]
    report = compare_said(REFERENCE, run)
    assert not report.lost and not report.duplicated
