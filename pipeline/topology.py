"""Where every socket lives: the one map of the pipeline's wiring.

    capture --PUSH/PULL audio--> vad --PUSH utt_<class>--> dispatch --ROUTER/DEALER pool--> transcribe_<class>[.n]
                                    vad --PUSH partial_<class> (HWM 1)--> dispatch (keeps the newest)
    transcribe_* --DEALER pool (credit, results, hints)--> dispatch --PUSH/PULL results--> sink
    sink --PUB transcripts--> LUXA (topic `transcript`)
    dispatch --PUSH/PULL hints (is the sentence over?)--> vad
    wyoming, openai --PUSH/PULL requests (a client's whole turn, and speculative copies)--> vad
    sink --PUB events (private: `ack`, and each final)--> vad, wyoming, openai, supervisor (test mode)
    every stage --PUB control_up--> supervisor
    supervisor --PUB control_down (route, stop, activate a spare)--> stages

Binding sides are the long-lived ends (VAD for audio and utterances, sink for results and
transcripts, supervisor for control), so a restarted peer simply reconnects.

The VAD sends to a device *class* (`transcribe_gpu`, `transcribe_cpu`: the supervisor's route);
the dispatcher gives each job to a free worker of that class, of which there may be several
(`transcribe.cpu.workers: 2` -> `transcribe_cpu`, `transcribe_cpu.1`), some on other hosts
(`transcribe.pool.listen`: a tcp ROUTER with CURVE) (pipeline/pool.py).

Several microphones (`audio.device: [a, b]`) make several *lanes*: lane k >= 1 has a capture and a
VAD of its own (`capture.k`, `vad.k`), with its own sockets (`audio.k`, `utt_<worker>.k`, ...) and
durable state (`vad_spool.k`, ...), so one room's noise, crash or backpressure never stalls
another's. Workers and the sink serve every lane; front doors send to lane 0's VAD.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.config import PipelineConfig
from pipeline.transport import PortSpec, ipc_endpoint

WORKERS = ("transcribe_gpu", "transcribe_cpu")  # routing preference, best first
STAGES = ("sink", "dispatch", "transcribe_gpu", "transcribe_cpu", "vad", "wyoming", "openai", "capture")  # consumers first
FRONT_DOORS = ("capture", "wyoming", "openai")  # where work comes in: stopped first, so the VAD can drain what they sent
MODULES = {"openai": "openai_api"}  # stages/<module>.py where it is not the stage's name (`openai` is the client package's)


LANED = ("capture", "vad")  # the stages each lane (microphone) has its own process of
NUMBERED = (*LANED, *WORKERS)  # stages that may run as several processes, `name.k` for k >= 1


def lane_count(cfg: PipelineConfig) -> int:
    return len(cfg.audio.devices) if cfg.audio.captures else 1


def lane_suffix(lane: int) -> str:
    """Lane 0 keeps the plain names (one microphone: nothing changes); lane k adds `.k`."""
    return f".{lane}" if lane else ""


def lane_stage(stage: str, lane: int) -> str:
    return stage + lane_suffix(lane)


def base_stage(name: str) -> str:
    """`vad.2` -> `vad`, `transcribe_cpu.1` -> `transcribe_cpu`: what a lane's process or a pool's
    worker is an instance of (its module, its limits, its spares, its route)."""
    base, _, number = name.partition(".")
    return base if number.isdigit() and base in NUMBERED else name


def lane_of(name: str) -> int:
    """The lane of a capture or VAD, the member number of a pool's worker."""
    base, _, number = name.partition(".")
    return int(number) if number.isdigit() and base in NUMBERED else 0


def is_worker(name: str) -> bool:
    return base_stage(name) in WORKERS


def audio(run_dir: Path, lane: int = 0) -> str:
    return ipc_endpoint(run_dir, "audio" + lane_suffix(lane))


def utterances(run_dir: Path, worker: str, lane: int = 0) -> str:
    return ipc_endpoint(run_dir, f"utt_{worker}" + lane_suffix(lane))


def partials(run_dir: Path, worker: str, lane: int = 0) -> str:
    return ipc_endpoint(run_dir, f"partial_{worker}" + lane_suffix(lane))


POOL_KINDS = ("worker_ready", "transcript", "turn_hint")  # what workers send the dispatcher


def pool(run_dir: Path) -> str:
    """Workers <-> dispatcher on this machine (the dispatcher's ROUTER binds)."""
    return ipc_endpoint(run_dir, "pool")


def remote_pool_port(cfg: PipelineConfig) -> PortSpec | None:
    """The dispatcher's ROUTER for workers on other hosts (`transcribe.pool.listen`), if any."""
    pool = cfg.transcribe.pool
    if not pool.listen:
        return None
    curve = (pool.curve.server_secret_key, pool.curve.authorized_clients_dir) if pool.curve else None
    return PortSpec("router", pool.listen, bind=True, kinds=POOL_KINDS,
                    curve_server=curve)


def requests(run_dir: Path) -> str:
    """Front doors (the Wyoming server) -> VAD: whole utterances, routed like the VAD's own (the VAD binds)."""
    return ipc_endpoint(run_dir, "requests")


def hints(run_dir: Path, lane: int = 0) -> str:
    """Workers -> VAD: turn hints from speculative decodes (the VAD binds)."""
    return ipc_endpoint(run_dir, "hints" + lane_suffix(lane))


def replay(run_dir: Path, lane: int = 0) -> str:
    """A restarted VAD asks capture for the audio after its committed offset (capture binds)."""
    return ipc_endpoint(run_dir, "replay" + lane_suffix(lane))


def results(run_dir: Path) -> str:
    return ipc_endpoint(run_dir, "results")


def transcripts(cfg: PipelineConfig, run_dir: Path) -> str:
    """The public endpoint other LUXA processes subscribe to."""
    return cfg.endpoints.transcripts or ipc_endpoint(run_dir, "transcripts")


def public_port(cfg: PipelineConfig, run_dir: Path) -> PortSpec:
    curve = cfg.endpoints.curve
    return PortSpec("pub", transcripts(cfg, run_dir), bind=True, blocking=False,
                    curve_server=(curve.server_secret_key, curve.authorized_clients_dir) if curve else None)


SPOOL_END_OF_STREAM = "end-of-stream"  # the VAD's spool entry that says the source is done


def vad_spool(run_dir: Path, lane: int = 0) -> Path:
    return run_dir / ("vad_spool" + lane_suffix(lane))


def published_ids(run_dir: Path) -> Path:
    return run_dir / "sink_published.ids"


def capture_cursor(run_dir: Path, lane: int = 0) -> Path:
    return run_dir / f"capture_cursor{lane_suffix(lane)}.json"


def vad_offset(run_dir: Path, lane: int = 0) -> Path:
    return run_dir / f"vad_offset{lane_suffix(lane)}.json"


def history(run_dir: Path) -> Path:
    """The finals published, numbered, for subscribers that missed some (pipeline/history.py)."""
    return run_dir / "history.bin"


def stage_record(run_dir: Path) -> Path:
    """Which process serves each stage, for a restarted supervisor to adopt (pipeline/adoption.py)."""
    return run_dir / "stages.json"


def state_paths(run_dir: Path) -> tuple[Path, ...]:
    """What stages keep across their own crashes and the supervisor's (pipeline/rundir.py): lane
    0's spool, the published ids and lane 0's cursor first, then the rest and every other lane's."""
    lanes = sorted({int(lane) for pattern in ("vad_spool.*", "capture_cursor.*.json", "vad_offset.*.json")
                    for p in run_dir.glob(pattern) if (lane := p.name.split(".")[1]).isdigit()})
    laned = [path for lane in lanes for path in (vad_spool(run_dir, lane), capture_cursor(run_dir, lane),
                                                  vad_offset(run_dir, lane))]
    return (vad_spool(run_dir), published_ids(run_dir), capture_cursor(run_dir), vad_offset(run_dir), history(run_dir),
            stage_record(run_dir), *laned)


def events(run_dir: Path) -> str:
    """The sink's private PUB: acknowledgements for the VAD, finals for the supervisor's check."""
    return ipc_endpoint(run_dir, "events")


def worker_config(cfg: PipelineConfig, worker: str):
    return cfg.transcribe.gpu if worker == "transcribe_gpu" else cfg.transcribe.cpu


def enabled_workers(cfg: PipelineConfig) -> list[str]:
    return [w for w in WORKERS if worker_config(cfg, w).enabled]


def remote_only(cfg: PipelineConfig) -> list[str]:
    """Enabled classes with no local worker (`workers: 0`): served from other hosts, always routable."""
    return [w for w in enabled_workers(cfg) if worker_config(cfg, w).workers == 0]


def chain_models(cfg: PipelineConfig) -> list[str]:
    """Every model the enabled workers' chains may answer with, once each, in chain order."""
    chains = [worker_config(cfg, w).models for w in enabled_workers(cfg)]
    return list(dict.fromkeys(m for chain in chains for m in chain))


def active_stages(cfg: PipelineConfig) -> list[str]:
    """The stages this configuration runs, in start order: the enabled workers, capture unless
    `audio.device: none`, each server of `servers` that is set; capture and VAD once per lane."""
    wanted = {"capture": cfg.audio.captures, "wyoming": cfg.servers.wyoming is not None,
              "openai": cfg.servers.openai is not None}
    workers = enabled_workers(cfg)
    stages = [s for s in STAGES if (s in workers if s in WORKERS else wanted.get(s, True))]
    return [lane_stage(s, k) for s in stages for k in range(instances(cfg, s))]


def instances(cfg: PipelineConfig, stage: str) -> int:
    """How many processes serve `stage`: one per lane, a pool's workers, else one."""
    if stage in LANED:
        return lane_count(cfg)
    return worker_config(cfg, stage).workers if stage in WORKERS else 1
