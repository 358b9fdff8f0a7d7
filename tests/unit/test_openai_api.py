"""The OpenAI API's request checks and answer formats, without a server."""

import pytest

from pipeline import frames
from pipeline.config_exposure import OpenAIConfig
from pipeline.openai_server import ApiError, OpenAIApi, Request, render

BOUNDARY = "b0undary"


class Door:
    """A stage with no worker routed yet."""

    def worker_routed(self) -> bool:
        return False


def api() -> OpenAIApi:
    return OpenAIApi(OpenAIConfig(url="http://127.0.0.1:8000"), Door(), ["base"], ["fr", "en"])


def form(**fields: bytes) -> tuple[str, bytes]:
    parts = [f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"'
             f'{"; filename=a.wav" if name == "file" else ""}\r\n\r\n'.encode() + value + b"\r\n"
             for name, value in fields.items()]
    return f"multipart/form-data; boundary={BOUNDARY}", b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


@pytest.mark.parametrize("fields, code", [
    ({"model": b"whisper-1"}, "missing_file"),
    ({"file": b"x", "model": b"tiny"}, "model_not_found"),
    ({"file": b"x", "language": b"xx"}, "unsupported_language"),
    ({"file": b"x", "response_format": b"mp3"}, "invalid_response_format"),
    ({"file": b"x", "temperature": b"2"}, "invalid_temperature"),
    ({"file": b"x", "temperature": b"warm"}, "invalid_temperature"),
])
def test_bad_fields_are_400_naming_the_field(fields, code):
    with pytest.raises(ApiError) as err:
        api().parse(*form(**fields))
    assert (err.value.status, err.value.code) == (400, code)
    assert err.value.body()["error"]["type"] == "invalid_request_error"


def test_a_body_that_is_not_multipart_is_400():
    with pytest.raises(ApiError) as err:
        api().parse("application/json", b"{}")
    assert err.value.code == "invalid_content_type"


def test_defaults_are_the_configured_chain_french_and_json():
    request = api().parse(*form(file=b"RIFF..."))
    assert (request.model, request.language, request.response_format, request.audio) == ("whisper-1", "fr", "json",
                                                                                         b"RIFF...")


def test_no_routed_worker_is_503_after_the_audio_checks():
    silence = b"RIFF$}\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00\x01\x00\x80>\x00\x00\x00}\x00\x00\x02\x00\x10\x00data\x00}\x00\x00" + b"\0" * 32000
    with pytest.raises(ApiError) as err:
        api().transcribe(Request(silence, "whisper-1", "fr", "json"))
    assert (err.value.status, err.value.code) == (503, "not_ready")
    with pytest.raises(ApiError) as err:
        api().transcribe(Request(b"not audio", "whisper-1", "fr", "json"))
    assert (err.value.status, err.value.code) == (400, "invalid_audio")


def test_subtitles_number_and_stamp_each_segment():
    transcript = frames.Transcript("oa1", "Un. Deux.", "fr", [{"start_s": 0.0, "end_s": 1.25, "text": " Un."},
                                                            {"start_s": 61.5, "end_s": 3723.004, "text": "Deux."}],
                                   "base", "cpu", "transcribe_cpu", 3.0, 0.1, 0.03, True, 0.0)
    _, srt = render(transcript, Request(b"", "whisper-1", "fr", "srt"), 3.0)
    assert srt == "1\n00:00:00,000 --> 00:00:01,250\nUn.\n\n2\n00:01:01,500 --> 01:02:03,004\nDeux.\n"
    _, vtt = render(transcript, Request(b"", "whisper-1", "fr", "vtt"), 3.0)
    assert vtt.startswith("WEBVTT\n\n00:00:00.000 --> 00:00:01.250\nUn.\n")
    assert render(None, Request(b"", "whisper-1", "fr", "json"), 1.0)[1] == '{"text": ""}'  # not speech
