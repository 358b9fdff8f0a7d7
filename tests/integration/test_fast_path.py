"""The short-window fast path against the standard path, with the real `base` model on French speech."""

import pytest

from bench.wer import edit_distance, words
from pipeline.audio import load_audio
from pipeline.config import PipelineConfig, TranscribeConfig
from pipeline.harness.pipeline_process import ROOT
from pipeline.transcription.engine import Engine

pytestmark = pytest.mark.slow
RECORDINGS = sorted((ROOT / "tests" / "data" / "audio").glob("fr-*.wav"))


@pytest.fixture(scope="module")
def engines():
    made = {}
    for fast in (True, False):
        cfg = TranscribeConfig(fast_path=fast)
        engine = Engine(cfg.cpu, cfg, PipelineConfig().models_cache_dir())
        engine.load()
        made[fast] = engine
    return made


@pytest.mark.parametrize("wav", RECORDINGS, ids=lambda p: p.stem)
def test_fast_path_text_matches_the_standard_path(engines, wav):
    audio = load_audio(wav, 60)
    fast, standard = engines[True].transcribe(audio), engines[False].transcribe(audio)
    distance = edit_distance(words(standard.text), words(fast.text))
    assert distance <= max(1, len(words(standard.text)) // 5), (standard.text, fast.text)
    assert fast.processing_time_s < standard.processing_time_s


def test_a_preempted_partial_stops_after_encoding(engines):
    audio = load_audio(RECORDINGS[0], 60)
    fast = engines[True].models[0].fast
    assert fast.decode(audio, "fr", beam_size=1, cancelled=lambda: True).rejected == "preempted"
    assert fast.decode(audio, "fr", beam_size=1, cancelled=lambda: False).text


def test_the_full_stop_whisper_writes_is_scored_only_when_asked(engines):
    """A whole French sentence: Whisper gives the full stop it wrote a high probability (the endpoint's
    `end_probability`); nobody else pays for that pass."""
    audio = load_audio(RECORDINGS[0], 60)
    whole = engines[True].transcribe(audio, score_end=True)
    assert whole.text.endswith((".", "!", "?", "…")) and 0.5 <= whole.end_probability <= 1.0, whole
    assert engines[True].transcribe(audio).end_probability == -1.0  # not asked: no extra pass
    assert engines[False].transcribe(audio, score_end=True).end_probability == -1.0  # the standard path has none
    partial = engines[True].transcribe(audio, partial=True, score_end=True)
    assert partial.end_probability == -1.0  # interim text never pays for it
