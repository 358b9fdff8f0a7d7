"""A worker on another host, over tcp + CURVE: two network namespaces joined by a veth pair.

The pipeline (supervisor, capture, VAD, dispatcher, sink; no local worker: `transcribe.cpu.workers:
0`) runs in namespace A and listens for workers on A's side of the veth; the only worker runs in
namespace B (`python supervisor.py --role worker`, which supervises it) and connects over it.
Transcripts arrive; the link is cut while speech goes on and nothing is lost; once it is back the
worker is admitted again and everything said is published once; a worker with a key the pipeline
does not know is refused. Skipped where namespaces cannot be made (not root, no `ip`).
"""

from __future__ import annotations

import pytest

from pipeline.harness.netns import Hosts, NetnsUnavailable, remote_workers, stop
from pipeline.harness.pipeline_process import PipelineProcess, pipeline_config
from pipeline.harness.waiting import wait_until
from pipeline.keys import generate
from pipeline.testmode import TEST_RECORDING
from pipeline.transport import generate_certificates

pytestmark = pytest.mark.slow
PORT = 5599


@pytest.fixture
def hosts():
    try:
        made = Hosts()
    except NetnsUnavailable as err:
        pytest.skip(str(err))
    yield made
    made.close()


def test_a_worker_in_another_namespace_transcribes_survives_a_cut_link_and_a_stranger_is_refused(hosts, run_dir):
    keys = run_dir / "keys"
    curve = generate(keys)
    _, stranger_secret = generate_certificates(run_dir, "stranger")  # a valid key pair, never authorized
    cfg = pipeline_config(run_dir, transcribe={
        "gpu": {"enabled": False}, "cpu": {"workers": 0},
        "pool": {"listen": f"tcp://{hosts.address_a}:{PORT}", "curve": curve}})
    pipeline = PipelineProcess(run_dir, cfg, "--source", str(TEST_RECORDING), "--loop", "--quiet",
                               prefix=hosts.prefix("a"))
    endpoint = f"tcp://{hosts.address_a}:{PORT}"
    worker = stranger = None
    try:
        pipeline.wait_event("stage_up", stage_name="dispatch", timeout_s=120)
        worker = remote_workers(hosts, run_dir / "host-b", endpoint, keys / "server.key", keys / "client-1.key_secret")
        joined = pipeline.wait_event("worker_joined", remote=True, timeout_s=180)
        wait_until(lambda: len(pipeline.subscriber.transcripts()) >= 2, 120, what="transcripts from the remote worker")
        assert {t.worker for t in pipeline.subscriber.transcripts()} == {"transcribe_cpu"}

        hosts.link(up=False)  # while speech goes on: utterances wait in the dispatcher
        pipeline.wait_event("worker_vanished", worker="transcribe_cpu", reason="silent", timeout_s=60)
        closed_while_cut = len(pipeline.find("utterance_closed"))
        wait_until(lambda: len(pipeline.find("utterance_closed")) > closed_while_cut, 60,
                   what="speech closed while the link is down")
        hosts.link(up=True)
        wait_until(lambda: len(pipeline.find("worker_joined", remote=True)) >= 2, 120, what="the worker re-admitted")

        stranger = remote_workers(hosts, run_dir / "host-b2", endpoint, keys / "server.key", stranger_secret)
        wait_until(lambda: '"failed_auth"' in (run_dir / "host-b2" / "worker.log").read_text(errors="replace"), 120,
                   what="the stranger's handshake refused")
        published = len(pipeline.subscriber.transcripts())
        wait_until(lambda: len(pipeline.subscriber.transcripts()) >= published + 2, 120, what="transcripts after the cut")
        pipeline.proc.terminate()  # capture stops, the VAD drains through the remote worker
        assert pipeline.wait_exit(timeout_s=120) == 0, pipeline.log_tail()
    finally:
        pipeline.stop()
        for proc in (worker, stranger):
            if proc is not None:
                stop(proc)
    closed = {e["utt_id"] for e in pipeline.find("utterance_closed")}
    published = [t.utt_id for t in pipeline.subscriber.transcripts()]
    non_speech = {e["utt_id"] for e in pipeline.find("non_speech_dropped")}
    assert closed - set(published) - non_speech == set(), pipeline.log_tail()  # nothing lost
    assert len(published) == len(set(published))                             # nothing twice
    assert len(pipeline.find("worker_joined", remote=True)) == 2 and joined["pid"]  # the stranger never joined
