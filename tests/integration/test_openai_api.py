"""The OpenAI-compatible endpoint end to end: real supervisor and stages, the official `openai`
client over real HTTP, Whisper `base` on real French speech, no microphone."""

from __future__ import annotations

import openai
import pytest

from pipeline.harness.pipeline_process import ROOT, pipeline_config
from pipeline.harness.waiting import wait_until
from pipeline.testmode import keyword_hits

pytestmark = pytest.mark.slow
AUDIO = ROOT / "tests" / "data" / "audio"
KEY = "test-key-0123456789abcdef"
CONF = ["cette", "conférence", "est", "pleine"]


@pytest.fixture
def client(run_dir, start_pipeline):
    cfg = pipeline_config(run_dir, audio={"device": "none"}, supervisor={"spares": []},
                          servers={"openai": {"url": "http://127.0.0.1:0", "api_key": KEY, "max_upload_mb": 0.2}})
    pipeline = start_pipeline(cfg)
    port = pipeline.wait_event("openai_listening", timeout_s=120)["port"]
    pipeline.wait_event("stage_up", stage_name="transcribe_cpu", timeout_s=120)
    return pipeline, openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=KEY, max_retries=0, timeout=120)


def test_the_official_client_transcribes_french_in_every_response_format(client):
    pipeline, api = client
    assert {"whisper-1", "base"} <= {m.id for m in api.models.list()}
    assert "capture" not in pipeline.stage_pids()
    with open(AUDIO / "fr-conf-full.wav", "rb") as f:
        plain = api.audio.transcriptions.create(model="whisper-1", file=f, language="fr")
    assert keyword_hits(CONF, plain.text) >= 3, plain.text
    with open(AUDIO / "fr-all-circuits-busy-now.wav", "rb") as f:
        verbose = api.audio.transcriptions.create(model="base", file=f, response_format="verbose_json",
                                                  timestamp_granularities=["segment"])
    assert keyword_hits(["toutes", "lignes", "sont", "occupées"], verbose.text) >= 3
    assert verbose.language == "fr" and verbose.duration == pytest.approx(2.16, abs=0.05)
    assert verbose.segments and verbose.segments[-1].end <= verbose.duration + 0.01
    for fmt, head in (("text", ""), ("srt", "1\n00:00:00,000 --> "), ("vtt", "WEBVTT\n\n00:00:00.000 --> ")):
        with open(AUDIO / "fr-conf-full.wav", "rb") as f:
            body = api.audio.transcriptions.create(model="whisper-1", file=f, response_format=fmt)
        assert body.startswith(head) and keyword_hits(CONF, body) >= 3, (fmt, body)
    # The log and the subscriber are read in threads of their own: wait for them, then check.
    wait_until(lambda: len(pipeline.find("openai_request_served")) == 6, 30, what="six requests logged")
    wait_until(lambda: pipeline.subscriber.transcripts(), 30, what="the finals on the public topic")
    assert {t.source for t in pipeline.subscriber.transcripts()} == {"openai:127.0.0.1"}


def test_bad_requests_get_openai_shaped_errors_and_the_stage_goes_on(client):
    pipeline, api = client
    with pytest.raises(openai.BadRequestError) as bad_audio:
        api.audio.transcriptions.create(model="whisper-1", file=("note.wav", b"this is not audio"))
    assert bad_audio.value.code == "invalid_audio"
    with pytest.raises(openai.BadRequestError) as bad_model:
        api.audio.transcriptions.create(model="large-v9", file=("a.wav", b"RIFF"))
    assert bad_model.value.code == "model_not_found" and bad_model.value.param == "model"
    with pytest.raises(openai.BadRequestError) as words:
        with open(AUDIO / "fr-conf-full.wav", "rb") as f:
            api.audio.transcriptions.create(model="whisper-1", file=f, response_format="verbose_json",
                                            timestamp_granularities=["word"])
    assert words.value.code == "unsupported_granularity"
    with pytest.raises(openai.APIStatusError) as too_large:
        api.audio.transcriptions.create(model="whisper-1", file=("big.wav", b"\0" * 300_000))
    assert too_large.value.status_code == 413
    wrong_key = openai.OpenAI(base_url=api.base_url, api_key="not-the-key-at-all", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        wrong_key.models.list()
    pipeline.wait_event("openai_request_refused", timeout_s=30, status=401)  # the log line is read in a thread
    with open(AUDIO / "fr-conf-full.wav", "rb") as f:  # still serving
        assert keyword_hits(CONF, api.audio.transcriptions.create(model="whisper-1", file=f).text) >= 3
