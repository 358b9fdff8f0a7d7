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


def test_a_looped_recording_stopped_partway_counts_only_what_was_played():
    looped = REFERENCE * 3  # the laps begun, and one more
    run = REFERENCE + REFERENCE[:2]  # stopped in the second lap
    assert compare_said(looped, run, stopped_early=True) == compare_said(REFERENCE, REFERENCE)
    assert len(compare_said(looped, run).lost) == 6  # without it, the unplayed rest counts as lost


def test_a_sentence_lost_before_the_stop_still_counts():
    looped = REFERENCE * 3
    run = REFERENCE + [REFERENCE[0], REFERENCE[2], REFERENCE[3], REFERENCE[0]]
    report = compare_said(looped, run, stopped_early=True)
    assert report.lost == [REFERENCE[1]] and not report.duplicated


def test_a_short_final_misheard_in_its_place_is_lost_but_said_to_be_decoded_differently():
    reference = [REFERENCE[0], "au poste", REFERENCE[2]]
    report = compare_said(reference, [REFERENCE[0], "Oubaste", REFERENCE[2]])
    assert report.lost == ["au poste"] and report.decoded_differently == ["au poste"]
    gone = compare_said(reference, [REFERENCE[0], REFERENCE[2]])  # nothing where it was: lost, and only that
    assert gone.lost == ["au poste"] and not gone.decoded_differently
