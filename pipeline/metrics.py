"""Every Prometheus metric of the pipeline, in one place.

Children write through prometheus_client's multiprocess mode: the supervisor sets
PROMETHEUS_MULTIPROC_DIR before spawning them and serves one /metrics for all.
Names follow `stt_<thing>_<unit>`; utterance ids are never labels.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import Counter, Gauge, Histogram

from pipeline.topology import base_stage

LATENCY_BUCKETS_S = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0)

FRAMES_IN = Counter("stt_frames_in_total", "Frames received by a stage", ["stage", "kind"])
FRAMES_OUT = Counter("stt_frames_out_total", "Frames sent by a stage", ["stage", "kind"])
FRAMES_MALFORMED = Counter("stt_frames_malformed_total", "Frames dropped because they did not decode", ["stage", "port"])
FRAMES_DROPPED = Counter("stt_frames_dropped_total", "Frames dropped on purpose", ["stage", "reason"])
BAD_INPUT = Counter("stt_bad_input_total", "Client input refused (bad audio, bad file)", ["stage", "reason"])

UTTERANCES = Counter("stt_utterances_total", "Utterances closed by the VAD", ["stage", "reason"])
UTTERANCES_RESENT = Counter("stt_utterances_resent_total", "Utterances sent again after a route change or timeout", ["stage"])
VAD_SECONDS = Histogram("stt_vad_seconds", "VAD time per audio chunk", ["stage"],
                        buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05))
VAD_GATED = Counter("stt_vad_windows_gated_total", "Windows below vad.silence_floor_dbfs: silence, no Silero call",
                    ["stage"])
STATE_WRITE_ERRORS = Counter("stt_state_write_errors_total", "Durable state that could not be written (kept in memory)",
                             ["store"])
REPLAYED_FRAMES = Counter("stt_replayed_frames_total", "Frames capture sent again to a restarted VAD", ["stage"])
QUEUE_DEPTH = Gauge("stt_queue_depth", "Utterances waiting for a transcript", ["stage"], multiprocess_mode="livemax")
CAPTURE_OVERFLOWS = Counter("stt_capture_overflows_total", "Input overflows reported by the audio device", ["stage"])
CAPTURE_GAP_SECONDS = Counter("stt_capture_gap_seconds_total", "Audio lost to device re-opens", ["stage"])

TRANSCRIPTIONS = Counter("stt_transcriptions_total", "Transcription requests", ["model", "device", "outcome"])
ERRORS = Counter("stt_errors_total", "Transcription engine errors", ["model", "device", "error"])
FAST_PATH_REJECTED = Counter("stt_fast_path_rejected_total", "Short-window results the guard refused", ["model", "reason"])
LATENCY = Histogram("stt_latency_seconds", "Inference time per utterance", ["model", "device"], buckets=LATENCY_BUCKETS_S)
VRAM_USAGE = Gauge("stt_vram_usage_bytes", "GPU memory in use on the worker's GPU", ["device"], multiprocess_mode="livemax")
BREAKER_STATE = Gauge("stt_breaker_state", "Circuit breaker: 0 closed, 1 half-open, 2 open", ["model", "device"],
                      multiprocess_mode="livemax")
LAST_SUCCESS = Gauge("stt_engine_last_success_timestamp_seconds", "When the engine last answered (real or probe)",
                     ["device"], multiprocess_mode="livemax")
MODELS_LOADED = Gauge("stt_models_loaded", "Models loaded in a worker", ["stage"], multiprocess_mode="livemax")
PUBLISHED = Counter("stt_transcripts_published_total", "Transcripts published on the transcript topic", ["stage"])
SPECULATION = Counter("stt_speculation_total", "Final-quality decodes at pauses: decoded, used (the final's answer), "
                      "stretch_used (a decode that started after a stretch decoded at an earlier pause)", ["stage", "outcome"])
SPECULATION_OUTCOMES = ("decoded", "used", "stretch_used")
TURN_MODEL_SECONDS = Histogram("stt_turn_model_seconds", "Smart Turn time per finished-looking speculative text", ["stage"],
                               buckets=(0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0))
PARTIALS_PUBLISHED = Counter("stt_partials_published_total", "Interim transcripts published", ["stage"])
DUPLICATES = Counter("stt_transcripts_duplicate_total", "Duplicate transcripts dropped by the sink", ["stage"])
NON_SPEECH = Counter("stt_non_speech_total", "Utterances judged not speech (nothing published)", ["stage"])
E2E_LATENCY = Histogram("stt_publish_latency_seconds", "VAD close to publication", ["stage"], buckets=LATENCY_BUCKETS_S)

STAGE_RESTARTS = Counter("stt_stage_restarts_total", "Stage restarts by the supervisor", ["stage", "reason"])
STAGE_UP = Gauge("stt_stage_up", "1 when the stage is READY or RUNNING", ["stage"], multiprocess_mode="livemax")
STAGE_FAILED = Gauge("stt_stage_failed", "1 when the supervisor gave up on the stage", ["stage"], multiprocess_mode="livemax")
POOL_WORKERS = Gauge("stt_pool_workers", "Workers connected to the dispatcher, by class and state (free, busy)",
                     ["pool", "state"], multiprocess_mode="livemax")
POOL_REQUEUED = Counter("stt_pool_requeued_total", "Unfinished finals given back by a worker that vanished", ["pool"])
ACTIVE_WORKER = Gauge("stt_active_worker", "1 for the worker utterances are routed to", ["worker"], multiprocess_mode="livemax")
FAILOVERS = Counter("stt_worker_switches_total", "Active worker changes", ["from_worker", "to_worker"])

WYOMING_TURNS = Counter("stt_wyoming_turns_total", "Wyoming turns by how they ended", ["outcome"])
WYOMING_SECONDS = Histogram("stt_wyoming_seconds", "Wyoming audio-stop to transcript sent", buckets=LATENCY_BUCKETS_S)
OPENAI_REQUESTS = Counter("stt_openai_requests_total", "OpenAI API requests by HTTP status", ["path", "status"])
WYOMING_CLIENTS = Gauge("stt_wyoming_clients", "Wyoming connections open", multiprocess_mode="livemax")


# Closed label sets: known in advance, so every series can exist (at 0) before the first event.
ERROR_KINDS = ("load", "warmup", "cuda", "inference")  # stt_errors_total{error}; logs carry the exception
OUTCOMES = ("ok", "non_speech", "partial", "error")    # stt_transcriptions_total{outcome}
WYOMING_OUTCOMES = ("transcript", "empty", "error", "refused")  # stt_wyoming_turns_total{outcome}
HANG_REASONS = ("heartbeat_missed", "busy_too_long", "start_timeout", "memory_limit")  # besides exit_N, signal_N
CLOSE_REASONS = ("silence", "max_silence", "turn_complete", "max_length", "flush", "request")  # stt_utterances_total{reason}
STATE_STORES = ("vad_spool", "sink_published.ids", "capture_cursor.json", "vad_offset.json", "history.bin",
                "stages.json")  # stt_state_write_errors_total{store}


class Children:
    """One metric's labelled children, looked up once: `labels()` validates and takes a lock on
    every call, a visible share of a stage's cost at 31 frames a second."""

    def __init__(self, metric) -> None:
        self._metric, self._children = metric, {}

    def __call__(self, *values: str):
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = self._metric.labels(*values)
        return child


def declare_known_series(models_by_device: dict[str, list[str]], stages: Iterable[str], workers: Iterable[str],
                         gpus: Iterable[str]) -> None:
    """Every series whose labels are known before any traffic, at 0, from the first scrape on: an
    alert on `rate(stt_errors_total[5m])` must read 0, not "no data". Called by the supervisor,
    which lives as long as the pipeline (a counter's 0 from it sums with the stages' values; a
    livemax gauge's 0 is overridden by any live stage's value)."""
    stages = list(stages)
    for device, models in models_by_device.items():
        for model in models:
            LATENCY.labels(model, device)
            for outcome in OUTCOMES:
                TRANSCRIPTIONS.labels(model, device, outcome)
            for kind in ERROR_KINDS:
                ERRORS.labels(model, device, kind)
    for gpu in gpus:
        VRAM_USAGE.labels(gpu).set(0)
    for stage in stages:
        STAGE_UP.labels(stage).set(0)
        STAGE_FAILED.labels(stage).set(0)
        for reason in HANG_REASONS:
            STAGE_RESTARTS.labels(stage, reason)
    for worker in workers:
        ACTIVE_WORKER.labels(base_stage(worker)).set(0)
        POOL_REQUEUED.labels(base_stage(worker))
        for state in ("free", "busy"):
            POOL_WORKERS.labels(base_stage(worker), state).set(0)
        MODELS_LOADED.labels(worker).set(0)
        for outcome in SPECULATION_OUTCOMES:
            SPECULATION.labels(worker, outcome)
    for metric in (PUBLISHED, DUPLICATES, NON_SPEECH, PARTIALS_PUBLISHED, E2E_LATENCY):
        metric.labels("sink")
    for vad in [s for s in stages if base_stage(s) == "vad"] or ["vad"]:  # one per lane
        for reason in CLOSE_REASONS:
            UTTERANCES.labels(vad, reason)
        QUEUE_DEPTH.labels(vad).set(0)
        VAD_GATED.labels(vad)
    for capture in [s for s in stages if base_stage(s) == "capture"] or ["capture"]:
        REPLAYED_FRAMES.labels(capture)
    for store in STATE_STORES:
        STATE_WRITE_ERRORS.labels(store)
    if "wyoming" in stages:
        for outcome in WYOMING_OUTCOMES:
            WYOMING_TURNS.labels(outcome)


def mark_dead(pid: int | None) -> None:
    """Drop a reaped child's live gauges (multiprocess mode only)."""
    import os

    if pid and os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)
