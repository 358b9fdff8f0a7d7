"""The HTTP side of the OpenAI API stage: `POST /v1/audio/transcriptions` and `GET /v1/models`.

The standard library's threading HTTP server (one thread per request, bounded by `max_clients`)
and its email parser for the multipart form: no web framework for two routes. A request's audio
(any format pipeline/audio.py decodes) becomes one Utterance for the VAD's `requests` port, so it
reaches the same workers as the microphone (pipeline/front_door.py). Errors have OpenAI's shape,
`{"error": {"message", "type", "param", "code"}}`: 400 bad audio or fields, 401 a missing or wrong
key, 404 another path, 413 over `max_upload_mb`, 429 over `max_clients`, 503 while no worker is
routed, 504 when no answer came.
"""

from __future__ import annotations

import email.parser
import email.policy
import hmac
import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from pipeline import frames, metrics
from pipeline.audio import TARGET_RATE_HZ, AudioInputError, AudioTooLongError, load_audio
from pipeline.config_exposure import OpenAIConfig
from pipeline.front_door import FrontDoorStage, NoAnswer
from pipeline.logs import get_logger

FORMATS = ("json", "text", "srt", "vtt", "verbose_json")
ROUTES = ("/v1/models", "/v1/audio/transcriptions")  # metric labels: any other path counts as `other`
ALIAS = "whisper-1"  # what OpenAI clients send by default: the configured chain answers it


class ApiError(Exception):
    """An answer in OpenAI's error shape."""

    def __init__(self, status: int, message: str, code: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.param = status, code, param

    def body(self) -> dict:
        kind = "invalid_request_error" if self.status < 500 else "server_error"
        return {"error": {"message": str(self), "type": kind, "param": self.param, "code": self.code}}


@dataclass(frozen=True)
class Request:
    """The fields of one transcription request, checked."""
    audio: bytes
    model: str
    language: str
    response_format: str


class OpenAIApi:
    """What the handler threads share: config, models, languages, the stage, the concurrency bound."""

    def __init__(self, cfg: OpenAIConfig, stage: FrontDoorStage, models: list[str], languages: list[str]) -> None:
        self.cfg, self.stage, self.models, self.languages = cfg, stage, models, languages
        self.slots = threading.BoundedSemaphore(cfg.max_clients)
        self.log = get_logger()

    def server(self) -> ThreadingHTTPServer:
        api = self

        class Handler(ApiHandler):
            pass

        Handler.api = api
        server = ThreadingHTTPServer(self.cfg.host_port, Handler)
        server.daemon_threads = True
        return server

    def model_list(self) -> dict:
        return {"object": "list", "data": [{"id": m, "object": "model", "created": 0, "owned_by": "luxa"}
                                           for m in [ALIAS, *self.models]]}

    def parse(self, content_type: str, body: bytes) -> Request:
        if not content_type.startswith("multipart/form-data"):
            raise ApiError(400, "send the request as multipart/form-data (file, model, ...)", "invalid_content_type")
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body)
        if not message.is_multipart():
            raise ApiError(400, "the multipart body does not parse", "invalid_multipart")
        fields: dict[str, list[bytes]] = {}
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            if name:
                fields.setdefault(name, []).append(part.get_payload(decode=True) or b"")
        text = {k: v[0].decode("utf-8", "replace").strip() for k, v in fields.items() if k != "file"}
        if "file" not in fields:
            raise ApiError(400, "the `file` field (the audio) is missing", "missing_file", "file")
        model = text.get("model") or ALIAS
        if model not in (ALIAS, *self.models):
            raise ApiError(400, f"model {model!r} is not one of {[ALIAS, *self.models]}", "model_not_found", "model")
        language = text.get("language") or self.languages[0]
        if language not in self.languages:
            raise ApiError(400, f"language {language!r} is not one of the model's", "unsupported_language", "language")
        response_format = text.get("response_format") or "json"
        if response_format not in FORMATS:
            raise ApiError(400, f"response_format must be one of {FORMATS}", "invalid_response_format", "response_format")
        _temperature(text.get("temperature"))
        granularities = {g.decode().strip() for g in fields.get("timestamp_granularities[]", [])}
        if granularities - {"segment", "word"}:
            raise ApiError(400, "timestamp_granularities[] takes segment and word", "invalid_granularity",
                           "timestamp_granularities[]")
        if "word" in granularities:
            raise ApiError(400, "word timestamps are not produced by this server (segments are)",
                           "unsupported_granularity", "timestamp_granularities[]")
        return Request(fields["file"][0], model, language, response_format)

    def transcribe(self, request: Request, client: str = "") -> tuple[frames.Transcript | None, float]:
        try:
            audio = load_audio(request.audio, self.cfg.max_audio_s)
        except AudioTooLongError as err:
            raise ApiError(400, str(err), "audio_too_long", "file") from None
        except AudioInputError as err:
            raise ApiError(400, f"the file is not audio that can be decoded: {err}", "invalid_audio", "file") from None
        if not self.stage.worker_routed():
            raise ApiError(503, "no transcription worker is ready; try again shortly", "not_ready")
        duration = audio.size / TARGET_RATE_HZ
        final = frames.Utterance(self.stage.mint_id(), 0.0, round(duration, 3), time.time(), TARGET_RATE_HZ,
                                 audio.tobytes(), language=request.language, source=f"openai:{client}")
        try:
            return self.stage.wait(final), duration
        except NoAnswer as err:
            raise ApiError(504, str(err), "timeout") from None


def _temperature(raw: str | None) -> None:
    """Checked, then left to the workers' own decoding (beam 5, temperature fallback): one pipeline."""
    if raw is None or raw == "":
        return
    try:
        value = float(raw)
    except ValueError:
        raise ApiError(400, "temperature must be a number from 0 to 1", "invalid_temperature", "temperature") from None
    if not 0 <= value <= 1:
        raise ApiError(400, "temperature must be a number from 0 to 1", "invalid_temperature", "temperature")


def render(transcript: frames.Transcript | None, request: Request, duration: float) -> tuple[str, str]:
    """(content type, body) in the requested response_format."""
    text = transcript.text if transcript else ""
    segments = [(s["start_s"], s["end_s"], s["text"].strip()) for s in (transcript.segments if transcript else [])]
    fmt = request.response_format
    if fmt == "text":
        return "text/plain; charset=utf-8", text + "\n"
    if fmt in ("srt", "vtt"):
        stamp = (lambda t: _clock(t, ",")) if fmt == "srt" else (lambda t: _clock(t, "."))
        cues = [f"{i + 1}\n" * (fmt == "srt") + f"{stamp(a)} --> {stamp(b)}\n{line}\n" for i, (a, b, line) in
                enumerate(segments)]
        return "text/plain; charset=utf-8", ("WEBVTT\n\n" if fmt == "vtt" else "") + "\n".join(cues)
    if fmt == "verbose_json":
        body = {"task": "transcribe", "language": transcript.language if transcript else request.language,
                "duration": round(duration, 3), "text": text,
                "segments": [{"id": i, "seek": 0, "start": a, "end": b, "text": line, "tokens": [], "temperature": 0.0,
                              "avg_logprob": 0.0, "compression_ratio": 0.0, "no_speech_prob": 0.0}
                             for i, (a, b, line) in enumerate(segments)]}
        return "application/json", json.dumps(body, ensure_ascii=False)
    return "application/json", json.dumps({"text": text}, ensure_ascii=False)


def _clock(seconds: float, separator: str) -> str:
    ms = round(seconds * 1000)
    return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d}{separator}{ms % 1000:03d}"


class ApiHandler(BaseHTTPRequestHandler):
    """One request; every answer is counted by path and status, and logged."""

    api: OpenAIApi
    timeout = 60  # s of silence on the socket before the connection is dropped (a stalled upload holds a thread)
    protocol_version = "HTTP/1.1"
    server_version = "luxa-stt"

    def do_GET(self) -> None:
        self._serve(lambda: ("application/json", json.dumps(self.api.model_list()))
                    if self.path.rstrip("/") == "/v1/models" else self._not_found())

    def do_POST(self) -> None:
        self._serve(self._transcription if self.path.rstrip("/") == "/v1/audio/transcriptions" else self._not_found)

    def _not_found(self):
        raise ApiError(404, f"no route {self.command} {self.path}", "not_found")

    def _serve(self, answer) -> None:
        started = time.perf_counter()
        try:
            self._authorize()
            content_type, body = answer()
            status = 200
        except ApiError as err:
            status, content_type, body = err.status, "application/json", json.dumps(err.body())
            if status < 500:
                metrics.BAD_INPUT.labels("openai", err.code).inc()
            self.api.log.warning("openai_request_refused", path=self.path, status=status, code=err.code, error=str(err))
        payload = body.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)
        route = self.path.split("?")[0].rstrip("/")
        metrics.OPENAI_REQUESTS.labels(route if route in ROUTES else "other", str(status)).inc()
        if status == 200:
            self.api.log.info("openai_request_served", path=self.path, took_s=round(time.perf_counter() - started, 3))

    def _authorize(self) -> None:
        key = self.api.cfg.api_key
        if key is None:
            return
        sent = self.headers.get("Authorization", "")
        if not hmac.compare_digest(sent.encode(), f"Bearer {key}".encode()):
            self.close_connection = True  # the body is left unread
            raise ApiError(401, "missing or wrong API key (Authorization: Bearer ...)", "invalid_api_key")

    def _transcription(self) -> tuple[str, str]:
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            self.close_connection = True
            raise ApiError(411, "a Content-Length is required", "length_required")
        if int(length) > self.api.cfg.max_upload_mb * 1024 * 1024:
            self.close_connection = True  # not read: the connection cannot be reused
            raise ApiError(413, f"the request is over {self.api.cfg.max_upload_mb:g} MB (servers.openai.max_upload_mb)",
                           "request_too_large")
        body = self.rfile.read(int(length))
        if not self.api.slots.acquire(blocking=False):
            raise ApiError(429, f"{self.api.cfg.max_clients} requests are being served (servers.openai.max_clients)",
                           "too_many_requests")
        try:
            request = self.api.parse(self.headers.get("Content-Type", ""), body)
            transcript, duration = self.api.transcribe(request, self.client_address[0])
        finally:
            self.api.slots.release()
        return render(transcript, request, duration)

    def log_message(self, format: str, *args) -> None:
        """The standard library's access log goes to stderr unstructured: our own lines say it all."""
