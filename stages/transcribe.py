"""Transcription worker: one module for every worker of the pool; the device comes from config.

`python -m stages.transcribe --worker transcribe_gpu|transcribe_cpu [--member N]`. The worker
takes its jobs from the dispatcher (stages/dispatch.py) over one DEALER socket, on which it also
sends its answers and, after every job and with every heartbeat, its credit (`WorkerReady`).
`--connect tcp://HOST:PORT --curve SERVER.key CLIENT.key_secret` joins a pipeline on another host.
The GPU worker exits 3 when no usable GPU is present, so the supervisor fails over to the
CPU-model worker. When every model of the chain fails on a request, the worker exits instead of
dropping the utterance: the VAD still holds it and sends it again to whichever worker is routed next.
"""

from __future__ import annotations

import os
import sys
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np
from faster_whisper.tokenizer import _LANGUAGE_CODES as WHISPER_LANGUAGES  # what faster-whisper itself checks against

from pipeline import frames, metrics, topology
from pipeline.audio import TARGET_RATE_HZ, AudioInputError, pcm_samples
from pipeline.cli import stage_main
from pipeline.endpointing import judge_turn
from pipeline.config import PipelineConfig, TranscribeConfig, WorkerConfig
from pipeline.exitcodes import ExitCode
from pipeline.logs import get_logger
from pipeline.runner import Output, Stage, StageFailed, StageStartError
from pipeline.transcription.engine import Engine, NoModelError, Result
from pipeline.transcription.faults import FaultInjector
from pipeline.transcription.gpu import GpuUnavailableError, NoGpuError
from pipeline.transcription.stretches import Stretches
from pipeline.transcription.turn_model import SideTurnModel, SmartTurn, TurnModelMissing, verified
from pipeline.transport import PortSpec

RECENT_FINALS = 1000  # answers kept to serve re-sent utterances without decoding them again
TURN_WARMUP_SAMPLES = 16000
DISPATCH = "dispatch"  # the one port: jobs in; answers, hints and credit out
SPECULATED_KEPT = 8  # speculative answers waiting for their final (one per open utterance in practice)


class TranscribeStage(Stage):
    """A transcription worker: utterances in, transcripts out, through its own `Engine`.

    Owns the engine's lifecycle (load and warm up in `preload`, a health probe when idle), the
    speculative answers decoded during an utterance's closing silence, and the answers already
    sent (a re-sent utterance is answered again without a second decode).
    """

    self_preempting = (DISPATCH,)  # the dispatcher sends a busy worker only a final to cut its partial short

    def __init__(self, worker: str, worker_cfg: WorkerConfig, cfg: TranscribeConfig, cache_dir: Path,
                 run_dir: Path, engine: Engine | None = None, dispatcher: PortSpec | None = None) -> None:
        self.name = worker
        self.pool = topology.base_stage(worker)  # its class: which of the VAD's routes it serves
        self.cfg = cfg
        dispatcher = dispatcher or PortSpec("dealer", topology.pool(run_dir), bind=False, kinds=("utterance",))
        self.inputs = {DISPATCH: dispatcher}
        self.outputs = {DISPATCH: dispatcher}
        self._done = 0  # jobs finished: the count each job's own credit carries (pipeline/pool.py)
        self._credited = 0  # the count of the last such credit handed to ZeroMQ, after that job's answers
        self._recent: OrderedDict[str, frames.Transcript] = OrderedDict()  # finals done, by utt_id
        self._speculated: OrderedDict[str, tuple[int, Result]] = OrderedDict()  # utt_id -> (samples, answer)
        self._stretches = Stretches(int(cfg.stretch_min_s * TARGET_RATE_HZ), TARGET_RATE_HZ)  # decoded at pauses
        # The CPU fallback is the other worker's job: this process never loads a second chain.
        fault = FaultInjector(cfg.inject_fault, run_dir) if cfg.inject_fault else None
        self.engine = engine or Engine(worker_cfg, cfg, cache_dir, fault=fault)
        self._cache_dir = cache_dir
        self.turn_model: SideTurnModel | None = None  # loaded in preload when cfg.turn_model names one
        self._turn_model_seconds = metrics.TURN_MODEL_SECONDS.labels(worker)
        self.exit_code = ExitCode.GPU_UNAVAILABLE if worker_cfg.device == "cuda" else ExitCode.TRANSIENT
        self.log = get_logger()

    def preload(self) -> None:
        started = time.perf_counter()
        try:
            self.engine.load()
            self.engine.warm_up()
        except GpuUnavailableError as err:
            code = ExitCode.NO_GPU if isinstance(err, NoGpuError) else ExitCode.GPU_UNAVAILABLE
            raise StageStartError(str(err), code) from None
        except NoModelError as err:
            raise StageStartError(str(err), self.exit_code) from None
        self._load_turn_model()
        models = [f"{m.name}@{self.engine.device}" for m in self.engine.models]
        metrics.MODELS_LOADED.labels(self.name).set(len(models))
        self.log.info("worker_warm", models=models, load_and_warmup_s=round(time.perf_counter() - started, 3))

    def _load_turn_model(self) -> None:
        """Smart Turn on one CPU thread, beside the decode (pipeline/transcription/turn_model.py);
        absent, the text alone decides."""
        if not self.cfg.turn_model:
            return
        try:
            self.turn_model = SideTurnModel(SmartTurn(verified(self._cache_dir), threads=1), self._turn_model_seconds)
            self.turn_model.warm_up(TURN_WARMUP_SAMPLES)
        except TurnModelMissing as err:
            self.log.warning("turn_model_unavailable", model=self.cfg.turn_model, error=str(err))

    def preempt(self) -> None:
        """A final or speculative copy waits behind a partial: the partial stops after encoding."""
        self.engine.preempt_partial()

    def handle(self, port: str, frame: frames.Frame) -> list[Output]:
        """Every job's answers, then the credit for the next job."""
        if not isinstance(frame, frames.Utterance):
            return []
        answers = self._answer(frame)
        self._done += 1
        return answers + [(DISPATCH, frames.WorkerReady(self.name, self.pool, os.getpid(), self._done, True))]

    def heartbeat_outputs(self, busy: bool) -> list[Output]:
        # `_credited`, not `_done`: a heartbeat can go out between a job's end and the sending of its
        # answers, and must not tell the dispatcher the job is over before its transcript is on its way.
        return [(DISPATCH, frames.WorkerReady(self.name, self.pool, os.getpid(), self._credited,
                                              not busy and self._credited == self._done))]

    def sent(self, port: str, frame: frames.Frame) -> None:
        if isinstance(frame, frames.WorkerReady):
            self._credited = max(self._credited, frame.done)

    def _answer(self, frame: frames.Utterance) -> list[Output]:
        """A final gets exactly one transcript (an empty one for unusable audio, so the VAD stops
        re-sending it); a speculative copy gets a turn hint (its answer is kept for the final); a
        partial gets interim text or nothing. Raises StageFailed when no model can answer."""
        if frame.is_partial:
            return self._partial(frame)
        if frame.speculative:
            return self._speculate(frame)
        if frame.utt_id in self._recent:
            # Re-sent after a sink or VAD restart: the answer is already known, no second decode.
            metrics.FRAMES_DROPPED.labels(self.name, "answered_again").inc()
            return [(DISPATCH, self._recent[frame.utt_id])]
        try:
            result, ahead = self._final_result(frame)
        except AudioInputError:  # counted and logged (once) in _decode
            return [(DISPATCH, self._remember(_empty(frame, self.name, self.engine.device)))]
        except NoModelError as err:
            raise self._failed(str(err)) from None
        self.log.info("utterance_transcribed", utt_id=frame.utt_id, model=result.model_used, speculated=ahead,
                      audio_s=round(result.audio_duration_s, 3), inference_s=round(result.processing_time_s, 3),
                      rtf=round(result.rtf, 3), non_speech=result.non_speech_reason,
                      queue_s=round(max(0.0, time.time() - frame.t_closed_wall_s - result.processing_time_s), 3))
        return [(DISPATCH, self._remember(self._transcript(frame, result)))]

    def _final_result(self, frame: frames.Utterance) -> tuple[Result, bool]:
        """(result, whether it was decoded ahead, during the closing silence)."""
        ahead = self._speculated.pop(frame.utt_id, None)
        if ahead is not None and frame.speculated_samples and ahead[0] == frame.speculated_samples:
            metrics.SPECULATION.labels(self.name, "used").inc()
            self._stretches.forget(frame.utt_id)
            return ahead[1], True  # only silence followed the speculative copy: its answer stands
        result = self._decode(frame, after_stretch=True)
        self._stretches.forget(frame.utt_id)
        return result, False

    def _decode(self, frame: frames.Utterance, partial: bool = False, after_stretch: bool = False) -> Result:
        """`after_stretch`: start after the stretch of this utterance already decoded at a pause, if any."""
        samples, language = self._samples(frame), frame.language or None
        base = self._stretches.before(frame.utt_id, samples.size) if after_stretch else None
        if base is None:
            return self.engine.transcribe(samples, language=language, partial=partial)
        metrics.SPECULATION.labels(self.name, "stretch_used").inc()
        tail = self.engine.transcribe(samples[base.tail_start:], language=language, previous=base.text)
        return self._stretches.joined(base, tail)

    def _samples(self, frame: frames.Utterance) -> np.ndarray:
        try:
            if frame.language and frame.language not in WHISPER_LANGUAGES:  # not a model failure: bad input
                raise AudioInputError(f"unknown language code {frame.language[:16]!r}")
            return pcm_samples(frame.pcm, frame.sample_rate_hz, self.cfg.max_audio_s)
        except AudioInputError as err:
            metrics.BAD_INPUT.labels(self.name, err.reason).inc()
            self.log.warning("audio_rejected", utt_id=frame.utt_id, reason=err.reason, error=str(err))
            raise

    def _speculate(self, frame: frames.Utterance) -> list[Output]:
        """A final-quality decode while the closing silence runs: kept for the final, and judged
        (is the sentence over?) for the VAD, which then closes the turn at once or waits on."""
        if frame.utt_id in self._recent:
            return []
        try:
            # Smart Turn hears the audio while Whisper decodes it: the verdict waits for the slower one only.
            turn_answer = self.turn_model.ask(self._samples(frame)) if self.turn_model is not None else None
            result = self._decode(frame, after_stretch=True)
        except (AudioInputError, NoModelError):
            return []  # the final will be decoded (and its error handled) the usual way
        self._stretches.decoded(frame.utt_id, len(frame.pcm) // 4, result, frame.pause_samples)
        self._speculated[frame.utt_id] = (len(frame.pcm) // 4, result)
        while len(self._speculated) > SPECULATED_KEPT:
            self._speculated.popitem(last=False)
        metrics.SPECULATION.labels(self.name, "decoded").inc()
        verdict = judge_turn(result.text, result.language, result.is_speech)
        # An unfinished text closes nothing whatever the audio says: Smart Turn is read for finished ones only.
        turn_probability = turn_answer.result() if turn_answer is not None and verdict.reason == "sentence_end" else -1.0
        return [(DISPATCH, frames.TurnHint(utt_id=frame.utt_id, speculated_samples=len(frame.pcm) // 4,
                                          complete=verdict.complete, reason=verdict.reason,
                                          end_logprob=result.end_logprob, turn_probability=turn_probability))]

    def _partial(self, frame: frames.Utterance) -> list[Output]:
        """Interim text; stale partials (their final already done) and failures are simply dropped."""
        if frame.utt_id in self._recent:
            metrics.FRAMES_DROPPED.labels(self.name, "stale_partial").inc()
            return []
        try:
            result = self._decode(frame, partial=True)
        except AudioInputError:  # counted and logged (once) in _decode
            return []
        except NoModelError as err:
            self.log.warning("partial_dropped", utt_id=frame.utt_id, error=str(err))
            return []
        if result.non_speech_reason == "preempted":
            self.log.info("partial_preempted", utt_id=frame.utt_id, audio_s=round(result.audio_duration_s, 3))
        return [(DISPATCH, self._transcript(frame, result))] if result.is_speech else []

    def _transcript(self, frame: frames.Utterance, result: Result) -> frames.Transcript:
        return frames.Transcript(
            utt_id=frame.utt_id, text=result.text, language=result.language, segments=result.segments,
            model_used=result.model_used, device=result.device, worker=self.name,
            audio_duration_s=result.audio_duration_s, processing_time_s=result.processing_time_s, rtf=result.rtf,
            is_speech=result.is_speech, t_closed_wall_s=frame.t_closed_wall_s, is_partial=frame.is_partial,
            start_s=frame.start_s, end_s=frame.end_s, source=frame.source)

    def _remember(self, transcript: frames.Transcript) -> frames.Transcript:
        self._recent[transcript.utt_id] = transcript
        if len(self._recent) > RECENT_FINALS:
            self._recent.popitem(last=False)
        return transcript

    def tick(self, now_ns: int) -> list[Output]:
        """Idle for a while: prove the engine still answers (what /ready reports)."""
        if self.engine.models and time.monotonic() - self.engine.last_success > self.cfg.health_probe_s:
            if not self.engine.probe():
                raise self._failed("health probe failed on every model")
        return []

    def _failed(self, reason: str) -> StageFailed:
        """Exit rather than drop: the VAD still holds the utterance and re-sends it elsewhere."""
        self.log.error("worker_failed", error=reason)
        return StageFailed(reason, self.exit_code)

    def close(self) -> None:
        if self.turn_model is not None:
            self.turn_model.close()
        self.engine.close()


def _empty(utt: frames.Utterance, worker: str, device: str) -> frames.Transcript:
    """Acknowledges an utterance that cannot be transcribed, so it is not sent again forever."""
    return frames.Transcript(utt_id=utt.utt_id, text="", language="", segments=[], model_used="", device=device,
                             worker=worker, audio_duration_s=0.0, processing_time_s=0.0, rtf=0.0, is_speech=False,
                             t_closed_wall_s=utt.t_closed_wall_s, source=utt.source)


def make_stage(cfg: PipelineConfig, args) -> TranscribeStage:
    worker_cfg = topology.worker_config(cfg, args.worker)
    os.nice(worker_cfg.nice)  # before any thread exists: they all inherit it
    return TranscribeStage(args.stage_name, worker_cfg, cfg.transcribe, cfg.models_cache_dir(), cfg.resolved_run_dir(),
                           dispatcher=remote_dispatcher(args.connect, args.curve))


def remote_dispatcher(endpoint: str | None, curve: list[str] | None) -> PortSpec | None:
    """The DEALER of a worker joining a pipeline on another host; None = this machine's (ipc)."""
    if endpoint is None:
        return None
    return PortSpec("dealer", endpoint, bind=False, kinds=("utterance",), curve_client=tuple(curve) if curve else None)


def _worker_args(parser) -> None:
    parser.add_argument("--worker", choices=topology.WORKERS, default="transcribe_cpu",
                        help="its class: which device's slice of the config it runs with")
    parser.add_argument("--member", type=int, default=0, help="which of the class's `workers` this process is")
    parser.add_argument("--connect", metavar="tcp://HOST:PORT",
                        help="join the pool of a pipeline on another host (its transcribe.pool.listen)")
    parser.add_argument("--curve", nargs=2, metavar=("SERVER_KEY", "CLIENT_SECRET_KEY"),
                        help="with --connect: the dispatcher's public certificate and this worker's secret one "
                             "(python -m pipeline.keys DIR; the worker's public key in the pipeline's authorized dir)")


def main() -> None:
    stage_main("transcribe", make_stage, _worker_args, name_of=lambda args: topology.lane_stage(args.worker, args.member))


if __name__ == "__main__":
    sys.exit(main())
