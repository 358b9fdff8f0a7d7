"""Chaos run: real speech through the real pipeline while random stages are SIGKILLed.

    python -m bench.chaos --minutes 10 --kills 100

Builds one long recording from the Debian French prompts (pauses between them), plays it as
fast as the pipeline takes it, and every 1-3 s SIGKILLs a running stage (each stage once per
round, rounds in random order). The "GPU"
worker runs the CPU model here (no GPU on these machines), so killing it exercises the
supervisor's real GPU -> CPU switch and the switch back. Afterwards it reports utterances the
VAD closed, transcripts published, lost and duplicated ones, and recovery time per kill, from the
processes' own logs: process (SIGKILL -> the replacement READY: the stage's preloaded spare when
it had one ready, else a cold start) and service (for a worker: until a worker is routed again;
killing the standby worker interrupts nothing). `--victims all` (the default) also kills the
preloaded spares and the supervisor itself; the harness then restarts the supervisor as systemd
would (KillMode=process: its stages left running, the same run dir), and the restarted one adopts
what still runs and resumes the rest.

`--against-clean` first plays the same recording once without kills and then compares what was
*said* (bench/said.py: the clean run's finals, by words) with what the chaos run published, so
speech that never became an utterance (a VAD killed mid-sentence) counts as lost too.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import random
import shutil
import signal
import statistics
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import soundfile

from bench.said import compare_said
from pipeline.harness.pipeline_process import PipelineProcess, pid_alive, pipeline_config
from pipeline.harness.waiting import wait_until
from pipeline.topology import WORKERS, base_stage, is_worker, lane_stage

STAGES = ("capture", "vad", "dispatch", "transcribe_gpu", "transcribe_cpu", "sink")
SUPERVISOR = "supervisor"  # restarted by the harness, as systemd would (examples/systemd/luxa-stt.service)
SPARES = tuple(f"spare:{name}" for name in ("capture", "vad", "dispatch", "transcribe_cpu", "sink"))
EVERYTHING = (*STAGES, SUPERVISOR, *SPARES)


def everything(cpu_workers: int = 1) -> tuple[str, ...]:
    """Every victim of a pipeline whose CPU pool has `cpu_workers` members (each with its spare)."""
    members = tuple(lane_stage("transcribe_cpu", k) for k in range(1, cpu_workers))
    return (*STAGES, *members, SUPERVISOR, *SPARES, *(f"spare:{m}" for m in members))


def _is_stage(victim: str) -> bool:
    return victim != SUPERVISOR and not victim.startswith("spare:")
OUT = Path(__file__).resolve().parent / "out"


@dataclass
class Kill:
    stage: str
    pid: int
    at_wall_s: float
    recovered_s: float | None = None  # process: SIGKILL -> the replacement READY
    service_s: float | None = None    # service: SIGKILL -> utterances flow again (a worker routed)
    by_spare: bool = False            # replaced by its preloaded spare, not a cold start


@dataclass
class ChaosReport:
    kills: list[Kill] = field(default_factory=list)
    closed: list[str] = field(default_factory=list)       # utterance ids the VAD closed
    published: list[str] = field(default_factory=list)    # finals received by a subscriber
    texts: list[str] = field(default_factory=list)        # their texts, in the order they were spoken
    non_speech: set[str] = field(default_factory=set)     # acknowledged, deliberately not published
    exit_code: int | None = None
    duration_s: float = 0.0
    timed_out: bool = False  # the kills asked for did not all happen within the run's timeout
    laps: int = 1            # passes through a looped recording begun (capture's source_looped + 1)
    caught_up: int = 0       # finals the subscriber missed on the socket and read from the sink's history

    @property
    def lost(self) -> list[str]:
        return sorted(set(self.closed) - set(self.published) - self.non_speech)

    @property
    def duplicated(self) -> list[str]:
        return sorted(u for u, n in Counter(self.published).items() if n > 1)

    def recovery_ms(self, stage: str | None = None, kind: str = "recovered_s") -> list[float]:
        values = [getattr(k, kind) for k in self.kills if stage is None or k.stage == stage]
        return sorted(v * 1000 for v in values if v is not None)

    def summary(self) -> dict:
        victims = dict.fromkeys(k.stage for k in self.kills)
        rows = {"all": self.recovery_ms(), **{s: self.recovery_ms(s) for s in victims}}
        service = {"all": self.recovery_ms(kind="service_s"), **{s: self.recovery_ms(s, "service_s") for s in victims}}
        return {"kills": len(self.kills), "kills_by_stage": dict(Counter(k.stage for k in self.kills)),
                "unrecovered": sum(k.recovered_s is None for k in self.kills),
                "replaced_by_spare": sum(k.by_spare for k in self.kills),
                "utterances_closed": len(set(self.closed)), "transcripts_published": len(set(self.published)),
                "non_speech": len(self.non_speech), "lost": len(self.lost), "duplicated": len(self.duplicated),
                "caught_up_from_history": self.caught_up,
                "recovery_ms": {name: _percentiles(v) for name, v in rows.items() if v},
                "service_recovery_ms": {name: _percentiles(v) for name, v in service.items() if v},
                "exit_code": self.exit_code, "timed_out": self.timed_out, "duration_s": round(self.duration_s, 1)}


def _percentiles(values: list[float]) -> dict:
    """Nearest-rank p95 (never below the median, even for a handful of values)."""
    p95 = values[min(len(values) - 1, math.ceil(0.95 * len(values)) - 1)]
    return {"p50": round(statistics.median(values)), "p95": round(p95), "max": round(values[-1]), "n": len(values)}


def _wall(event: dict) -> float:
    return datetime.fromisoformat(event["timestamp"]).timestamp()


def chaos_config(run_dir: Path, gpu_on_cpu: bool = True, spares_per_stage: int = 1, cpu_workers: int = 1) -> dict:
    """Defaults, except: never give up under deliberate kills, a CPU-model "GPU" worker, and
    `cpu_workers` in the CPU pool."""
    cfg = pipeline_config(run_dir, supervisor={"restart": {"max_restarts": 100_000, "stable_after_s": 2.0},
                                               "spares_per_stage": spares_per_stage})
    cfg["transcribe"] = {"cpu": {"workers": cpu_workers}, **({"gpu": {"device": "cpu"}} if gpu_on_cpu else {})}
    return cfg


def running_stages(pipeline: PipelineProcess) -> dict[str, int]:
    """Stages whose current process has reported READY: those are fair game."""
    up = {(e["stage_name"], e["pid"]) for e in pipeline.find("stage_up")}
    return {name: pid for name, pid in pipeline.stage_pids().items() if (name, pid) in up and pid_alive(pid)}


def ready_spares(pipeline: PipelineProcess) -> dict[str, int]:
    """Spares preloaded and standing by now, as `spare:<stage>` (the oldest, when a stage has several)."""
    ready = {(e["stage_name"], e["pid"]) for e in pipeline.find("spare_ready")}
    found: dict[str, int] = {}
    for name, pids in pipeline.all_spare_pids().items():
        for pid in pids:
            if (name, pid) in ready and pid_alive(pid):
                found.setdefault(f"spare:{name}", pid)
    return found


def victims_now(pipeline: PipelineProcess, victims: tuple[str, ...]) -> dict[str, int]:
    """What may be killed now: READY stages, preloaded spares, and the supervisor of a serving pipeline."""
    running = running_stages(pipeline)
    found = {s: p for s, p in running.items() if s in victims} | {
        s: p for s, p in ready_spares(pipeline).items() if s in victims}
    if SUPERVISOR in victims and set(STAGES) - {"transcribe_gpu"} <= set(running):
        found[SUPERVISOR] = pipeline.proc.pid
    return found


def run_chaos(audio: Path, run_dir: Path, config: dict, interval_s: tuple[float, float] = (1.0, 3.0),
              stages: tuple[str, ...] = STAGES, max_kills: int | None = None, kills_per_stage: int | None = None,
              seed: int = 0, timeout_s: float = 3600) -> ChaosReport:
    """Kill stages while `audio` plays; the report is collected from the processes' own logs.

    With `kills_per_stage`, the audio loops until every stage has been killed that many times
    (however fast this machine plays it); then the pipeline is stopped with SIGTERM, which lets
    the VAD drain everything it closed. Without it, the recording plays once to its end.
    """
    report = ChaosReport()
    core = tuple(s for s in stages if _is_stage(s)) or STAGES  # what must be up (and back) around the kills
    started = time.monotonic()
    loop = ["--loop"] if kills_per_stage else []
    pipeline = PipelineProcess(run_dir, config, "--source", str(audio), "--fast", "--quiet", *loop)
    try:
        # Fully up before the first kill: every stage READY and its spare preloaded. After that,
        # kills come whether or not a spare is ready again (a worker's takes 2-4 s to preload).
        # A clean run (max_kills=0) just plays: a short recording may be over before spares are up.
        if max_kills != 0:
            wait_until(lambda: _still_running(pipeline) and set(core) <= set(running_stages(pipeline))
                       and set(core) <= {e["stage_name"] for e in pipeline.find("spare_ready")},
                       300, what="every stage and spare up")  # a deadline for a cold start, not a speed claim
        deadline = started + timeout_s
        _kill(pipeline, report, random.Random(seed), interval_s, stages, max_kills, kills_per_stage, deadline)
        if kills_per_stage and pipeline.proc.poll() is None:
            # Stop only once every killed stage is back (a shutdown does not restart what it finds
            # dead): its READY process is not the one killed last, which may still be dying.
            wait_until(lambda: _all_replaced(pipeline, report, core), max(1.0, deadline - time.monotonic()),
                       what="every stage back after the last kill")
            pipeline.proc.send_signal(signal.SIGTERM)
        report.exit_code = pipeline.wait_exit(timeout_s=max(60.0, deadline - time.monotonic()))
    finally:
        pipeline.stop()
    report.duration_s = time.monotonic() - started
    (run_dir / "pipeline.log").write_text("".join(pipeline.stderr_lines))
    _collect(pipeline, report)
    return report


def _all_replaced(pipeline: PipelineProcess, report: ChaosReport, stages: tuple[str, ...]) -> bool:
    """Every stage READY in a process not killed last, and every spare killed preloaded again."""
    running = running_stages(pipeline)
    last_killed = {k.stage: k.pid for k in report.kills}
    spares = ready_spares(pipeline)
    return (all(s in running and running[s] != last_killed.get(s) for s in stages)
            and all(s in spares and spares[s] != pid for s, pid in last_killed.items() if s.startswith("spare:")))


def _still_running(pipeline: PipelineProcess) -> bool:
    if pipeline.proc.poll() is not None:
        raise AssertionError(f"the pipeline exited ({pipeline.proc.returncode}) before the kills began:\n"
                             f"{pipeline.log_tail()}")
    return True


def _kill(pipeline: PipelineProcess, report: ChaosReport, rng: random.Random, interval_s: tuple[float, float],
          stages: tuple[str, ...], max_kills: int | None, kills_per_stage: int | None, deadline: float) -> None:
    """SIGKILL a READY stage every `interval_s`, each stage once per round in a random order."""
    round_left: list[str] = []
    while pipeline.proc.poll() is None and not _enough(report, stages, max_kills, kills_per_stage):
        if time.monotonic() > deadline:
            report.timed_out = True
            return
        time.sleep(rng.uniform(*interval_s))  # the pace of the kills, not a synchronisation
        targets = victims_now(pipeline, stages)
        round_left = round_left or rng.sample(stages, len(stages))
        stage = next((s for s in round_left if s in targets), None)
        if stage is None:
            continue
        round_left.remove(stage)
        at = time.time()  # before: the supervisor may log the replacement READY before kill() returns here
        try:
            os.kill(targets[stage], signal.SIGKILL)
        except ProcessLookupError:
            continue
        report.kills.append(Kill(stage, targets[stage], at))
        if stage == SUPERVISOR:
            pipeline.restart_after_crash()


def _enough(report: ChaosReport, stages: tuple[str, ...], max_kills: int | None, kills_per_stage: int | None) -> bool:
    if max_kills is not None and len(report.kills) >= max_kills:
        return True
    by_stage = Counter(k.stage for k in report.kills)
    return kills_per_stage is not None and all(by_stage[s] >= kills_per_stage for s in stages)


def _collect(pipeline: PipelineProcess, report: ChaosReport) -> None:
    report.closed = [e["utt_id"] for e in pipeline.find("utterance_closed")]
    report.published = [t.utt_id for t in pipeline.subscriber.transcripts()]
    spoken = {utt_id: n for n, utt_id in enumerate(report.closed)}  # closing order, across VAD restarts
    report.texts = [t.text for t in sorted(pipeline.subscriber.transcripts(), key=lambda t: spoken.get(t.utt_id, -1))]
    report.non_speech = {e["utt_id"] for e in pipeline.find("non_speech_dropped")}
    report.caught_up = pipeline.subscriber.catch_up.filled
    report.laps = 1 + len(pipeline.find("source_looped"))
    ups = pipeline.find("stage_up")
    adopted = {e["pid"] for e in pipeline.find("stage_adopted")}
    switches = [(_wall(e), e["to_worker"]) for e in pipeline.find("worker_switched")]
    promoted = {e["replaces"] for e in pipeline.find("spare_promoted")}
    spares_ready = [(_wall(e), f"spare:{e['stage_name']}") for e in pipeline.find("spare_ready")]
    for kill in report.kills:
        if kill.stage == SUPERVISOR:
            kill.recovered_s, kill.service_s = _supervisor_back(kill, ups, adopted)
            continue
        if kill.stage.startswith("spare:"):  # nothing was interrupted; the process is back once a new spare is ready
            later = [t for t, name in spares_ready if name == kill.stage and t >= kill.at_wall_s]
            kill.recovered_s, kill.service_s = (min(later) - kill.at_wall_s if later else None), 0.0
            continue
        later = [_wall(e) for e in ups if e["stage_name"] == kill.stage and e["pid"] != kill.pid
                 and _wall(e) >= kill.at_wall_s]
        kill.recovered_s = min(later) - kill.at_wall_s if later else None
        if is_worker(kill.stage):
            others = _others_serving(kill, ups, pipeline.find("stage_failed"))
            kill.service_s = 0.0 if others else _service_recovery(kill, switches)
        else:
            kill.service_s = kill.recovered_s
        kill.by_spare = kill.pid in promoted


def _supervisor_back(kill: Kill, ups: list[dict], adopted: set[int]) -> tuple[float | None, float | None]:
    """(process: until the restarted supervisor has capture, VAD, sink and a worker up; service: 0
    when it adopted every one of them, which never stopped serving, else the same)."""
    firsts: dict[str, dict] = {}
    for event in ups:
        if _wall(event) >= kill.at_wall_s:
            firsts.setdefault(event["stage_name"], event)
    worker = min((firsts[w] for w in WORKERS if w in firsts), key=_wall, default=None)
    needed = [firsts.get(name) for name in ("capture", "vad", "dispatch", "sink")] + [worker]
    if None in needed:
        return None, None
    back = max(map(_wall, needed)) - kill.at_wall_s
    return back, 0.0 if all(e["pid"] in adopted for e in needed) else back


def _others_serving(kill: Kill, ups: list[dict], failures: list[dict]) -> list[str]:
    """The other workers of the killed one's pool that were up when it was killed: with one of
    them, the pool served on (the dispatcher gives the dead one's job to it)."""
    serving = []
    for name in {e["stage_name"] for e in ups if e["stage_name"] != kill.stage
                 and base_stage(e["stage_name"]) == base_stage(kill.stage)}:
        before = [e for e in ups if e["stage_name"] == name and _wall(e) <= kill.at_wall_s]
        if before and not any(f["stage_name"] == name and f["pid"] == before[-1]["pid"]
                              and _wall(f) <= kill.at_wall_s for f in failures):
            serving.append(name)
    return serving


def _service_recovery(kill: Kill, switches: list[tuple[float, str | None]]) -> float | None:
    """A killed standby worker interrupts nothing; a killed active one until a worker is routed
    again, or its replacement is READY while the route still names it (no switch was needed)."""
    before = [to for t, to in switches if t < kill.at_wall_s]
    if not before or before[-1] != base_stage(kill.stage):
        return 0.0
    routed = [t - kill.at_wall_s for t, to in switches if t >= kill.at_wall_s and to is not None]
    back = [v for v in (min(routed, default=None), kill.recovered_s) if v is not None]
    return min(back) if back else None


def build_recording(minutes: float, path: Path, pause_s: float = 1.0, seed: int = 0) -> int:
    """Debian French prompts in a shuffled order, joined with pauses, until `minutes` long."""
    from bench.corpus import ensure_installed, load_prompts, write_stream

    ensure_installed("fr")
    corpus = load_prompts("fr")
    random.Random(seed).shuffle(corpus)
    chosen, total_s = [], 0.0
    while total_s < minutes * 60:
        chosen.append(corpus[len(chosen) % len(corpus)])
        total_s += soundfile.info(str(chosen[-1].path)).duration + pause_s
    write_stream(chosen, path, pause_s)
    return len(chosen)


def print_table(summary: dict) -> None:
    print(f"kills {summary['kills']} {summary['kills_by_stage']}  unrecovered {summary['unrecovered']}  "
          f"replaced by a spare {summary['replaced_by_spare']}")
    print(f"utterances closed {summary['utterances_closed']}  published {summary['transcripts_published']}  "
          f"non-speech {summary['non_speech']}  lost {summary['lost']}  duplicated {summary['duplicated']}  "
          f"caught up from the history {summary['caught_up_from_history']}")
    print(f"{'recovery (ms)':16} {'p50':>6} {'p95':>6} {'max':>6} {'n':>4}")
    for name, row in summary["recovery_ms"].items():
        print(f"{name:16} {row['p50']:>6} {row['p95']:>6} {row['max']:>6} {row['n']:>4}")
    print(f"{'service (ms)':16} {'p50':>6} {'p95':>6} {'max':>6} {'n':>4}   (worker kills: until a worker is routed again)")
    for name, row in summary["service_recovery_ms"].items():
        print(f"{name:16} {row['p50']:>6} {row['p95']:>6} {row['max']:>6} {row['n']:>4}")
    if "said" in summary:
        said = summary["said"]
        print(f"against the clean run ({said['reference_finals']} finals): said but lost {said['lost']} "
              f"({said['decoded_differently']} of them: other words heard in their place)  "
              f"published twice {said['duplicated']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the speech recording")
    parser.add_argument("--kills", type=int, default=100, help="stop killing after this many (the run goes on)")
    parser.add_argument("--kills-per-stage", type=int, default=None,
                        help="loop the recording until every stage has been killed this many times, then stop")
    parser.add_argument("--min-interval", type=float, default=1.0)
    parser.add_argument("--max-interval", type=float, default=3.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--victims", choices=("all", "stages"), default="all",
                        help="all: active stages, preloaded spares and the supervisor (restarted as systemd "
                             "would); stages: active stages only")
    parser.add_argument("--spares-per-stage", type=int, default=1,
                        help="supervisor.spares_per_stage: 2 also covers a second kill of a stage while its "
                             "new spare preloads (1-5 s), which a kill every ~1 s often is")
    parser.add_argument("--cpu-workers", type=int, default=1, help="transcribe.cpu.workers: the CPU pool's size")
    parser.add_argument("--against-clean", action="store_true",
                        help="first a clean run of the same recording: count what was said, not what was closed")
    args = parser.parse_args()
    if args.against_clean and args.kills_per_stage:
        parser.error("--against-clean plays the recording once: use --kills, not --kills-per-stage")
    with tempfile.TemporaryDirectory(prefix="luxa-chaos-") as tmp:
        run_dir = Path(tmp)
        audio = run_dir / "speech.wav"
        prompts = build_recording(args.minutes, audio, seed=args.seed)
        print(f"chaos: {prompts} prompts, {args.minutes:g} min of French speech", flush=True)
        clean = None
        if args.against_clean:
            (run_dir / "clean").mkdir(mode=0o700)
            clean = run_chaos(audio, run_dir / "clean", chaos_config(run_dir / "clean", cpu_workers=args.cpu_workers),
                              max_kills=0)
        cfg = chaos_config(run_dir, spares_per_stage=args.spares_per_stage, cpu_workers=args.cpu_workers)
        victims = everything(args.cpu_workers)
        report = run_chaos(audio, run_dir, cfg,
                           (args.min_interval, args.max_interval),
                           max_kills=None if args.kills_per_stage else args.kills,
                           kills_per_stage=args.kills_per_stage, seed=args.seed,
                           stages=victims if args.victims == "all" else tuple(filter(_is_stage, victims)))
        OUT.mkdir(exist_ok=True)
        shutil.copy(run_dir / "pipeline.log", OUT / "chaos-pipeline.log")  # to profile a slow recovery afterwards
    summary = report.summary()
    if clean is not None:
        said = compare_said(clean.texts, report.texts)
        summary["said"] = {"reference_finals": len(clean.texts), "lost": len(said.lost),
                           "decoded_differently": len(said.decoded_differently),
                           "duplicated": len(said.duplicated), "lost_texts": said.lost,
                           "duplicated_texts": said.duplicated}
    print_table(summary)
    # The texts too: a "said but lost" final can then be told from a decode that came out different.
    (OUT / "chaos.json").write_text(json.dumps({**summary, "lost_ids": report.lost, "duplicated_ids": report.duplicated,
                                                "per_kill": [dataclasses.asdict(k) for k in report.kills],
                                                "texts": report.texts, "clean_texts": clean.texts if clean else None},
                                               indent=1, ensure_ascii=False))
    print(f"saved {OUT / 'chaos.json'}")


if __name__ == "__main__":
    main()
