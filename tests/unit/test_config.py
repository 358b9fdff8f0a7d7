import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline.config import FAULTS_ALLOWED_ENV, ConfigError, PipelineConfig, load_config, parse_config

ROOT = Path(__file__).resolve().parents[2]


def test_shipped_config_yaml_is_exactly_the_defaults():
    assert load_config(ROOT / "config.yaml") == PipelineConfig()


def test_defaults_are_french_cuda_and_cpu_workers_on_loopback():
    cfg = PipelineConfig()
    assert cfg.transcribe.language == "fr"
    assert (cfg.transcribe.gpu.device, cfg.transcribe.cpu.device) == ("cuda", "cpu")
    assert cfg.metrics.host == "127.0.0.1"


@pytest.mark.parametrize("data, message", [
    ({"vad": {"min_silence_ms": 0}}, "vad.min_silence_ms: Input should be greater than 0"),
    ({"vad": {"silence": 3}}, "vad.silence: Extra inputs are not permitted"),
    ({"vad": {"turn_model_sure_probability": 0.4}}, "turn_model_sure_probability must be at least turn_model_min"),
    ({"audio": {"sample_rate_hz": 44100}}, "audio: Value error, sample_rate_hz must be one of"),
    ({"transcribe": {"cpu": {"device": "tpu"}}}, "transcribe.cpu.device: Input should be 'cuda' or 'cpu'"),
    ({"transcribe": {"gpu": {"models": []}}}, "transcribe.gpu.models: List should have at least 1 item"),
    ({"endpoints": {"transcripts": "tcp://0.0.0.0:5555"}}, "needs CURVE authentication: set endpoints.curve"),
    ({"endpoints": {"transcripts": "tcp://192.168.1.5:5555"}}, "needs CURVE authentication: set endpoints.curve"),
    ({"metrics": {"host": "0.0.0.0"}}, "metrics.host: Input should be '127.0.0.1'"),
    ({"servers": {"wyoming": "tcp://0.0.0.0:10300"}}, "Wyoming has no authentication: list the clients allowed"),
    ({"servers": {"wyoming": {"uri": "tcp://192.168.1.5:10300", "allowed_clients": ["kitchen"]}}},
     "'kitchen' is not an IP address or network"),
    ({"servers": {"wyoming": "http://127.0.0.1:10300"}}, "is not tcp://HOST:PORT or unix:///PATH"),
    ({"audio": {"device": "none", "source": "a.wav"}}, "device: none starts no capture stage"),
    ({"audio": {"device": ["kitchen", "kitchen"]}}, "a list names one or more different microphones"),
    ({"audio": {"device": []}}, "a list names one or more different microphones"),
    ({"audio": {"device": ["kitchen", 2], "source": "a.wav"}}, "a list of microphones and a file source exclude"),
    ({"servers": {"openai": "http://0.0.0.0:8000"}}, "listens beyond loopback: set servers.openai.api_key"),
    ({"servers": {"openai": {"url": "http://127.0.0.1:8000", "api_key": "short"}}}, "at least 16 characters"),
    ({"servers": {"openai": "https://127.0.0.1:8000"}}, "is not http://HOST:PORT"),
])
def test_bad_values_name_the_key_and_the_reason(tmp_path, data, message):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert message in str(err.value)


def test_unparseable_yaml_is_a_config_error(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("vad: [unclosed")
    with pytest.raises(ConfigError, match="bad.yaml"):
        load_config(path)


def test_config_is_frozen():
    with pytest.raises(Exception):
        PipelineConfig().vad.threshold = 0.9


def test_supervisor_refuses_a_bad_key_before_starting_any_stage(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("vad:\n  treshold: 0.4\n")
    run_dir = tmp_path / "run"
    proc = subprocess.run([sys.executable, "supervisor.py", "--config", str(path), "--run-dir", str(run_dir)],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 78
    assert "config error: vad.treshold: Extra inputs are not permitted" in proc.stderr
    assert not run_dir.exists()  # nothing was prepared, no stage was spawned


def test_supervisor_refuses_a_wyoming_server_open_to_anyone(tmp_path):
    path = tmp_path / "open.yaml"
    path.write_text("servers:\n  wyoming: tcp://0.0.0.0:10300\n")
    proc = subprocess.run([sys.executable, "supervisor.py", "--config", str(path), "--run-dir", str(tmp_path / "run")],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 78 and "servers.wyoming" in proc.stderr and "allowed_clients" in proc.stderr


def test_a_wyoming_allow_list_admits_its_networks_and_loopback_only():
    wyoming = parse_config({"servers": {"wyoming": {"uri": "tcp://0.0.0.0:10300",
                                                    "allowed_clients": ["192.168.1.0/24", "10.0.0.7"]}}}).servers.wyoming
    assert [wyoming.allows(a) for a in ("192.168.1.40", "10.0.0.7", "127.0.0.1", "::1")] == [True] * 4
    assert [wyoming.allows(a) for a in ("192.168.2.1", "10.0.0.8", "not-an-ip")] == [False] * 3


def test_stages_follow_the_configuration():
    from pipeline.topology import active_stages

    assert active_stages(PipelineConfig()) == ["sink", "dispatch", "transcribe_gpu", "transcribe_cpu", "vad", "capture"]
    doors = parse_config({"audio": {"device": "none"}, "servers": {"wyoming": "tcp://127.0.0.1:10300"}})
    assert active_stages(doors) == ["sink", "dispatch", "transcribe_gpu", "transcribe_cpu", "vad", "wyoming"]
    api = parse_config({"servers": {"openai": {"url": "http://0.0.0.0:8000", "api_key": "k" * 32}}})
    assert active_stages(api)[-2:] == ["openai", "capture"]


def test_a_list_of_microphones_makes_one_capture_and_one_vad_per_lane():
    from pipeline import topology

    rooms = parse_config({"audio": {"device": ["kitchen", 3]}})
    assert topology.active_stages(rooms) == ["sink", "dispatch", "transcribe_gpu", "transcribe_cpu", "vad", "vad.1",
                                             "capture", "capture.1"]
    assert [rooms.audio.source_label(lane) for lane in (0, 1)] == ["mic:kitchen", "mic:3"]
    assert [(topology.base_stage(n), topology.lane_of(n)) for n in ("vad.1", "capture", "transcribe_cpu")] == [
        ("vad", 1), ("capture", 0), ("transcribe_cpu", 0)]
    assert PipelineConfig().audio.source_label(0) == "mic" and parse_config(
        {"audio": {"source": "a.wav"}}).audio.source_label(0) == "file"


def test_a_pool_of_workers_makes_numbered_workers_of_one_class():
    from pipeline import topology

    pool = parse_config({"transcribe": {"cpu": {"workers": 3}, "gpu": {"enabled": False}}})
    assert topology.active_stages(pool)[:5] == ["sink", "dispatch", "transcribe_cpu", "transcribe_cpu.1",
                                                 "transcribe_cpu.2"]
    assert [(topology.base_stage(n), topology.lane_of(n), topology.is_worker(n))
            for n in ("transcribe_cpu.2", "dispatch")] == [("transcribe_cpu", 2, True), ("dispatch", 0, False)]
    with pytest.raises(ConfigError, match="pool.listen"):
        parse_config({"transcribe": {"cpu": {"workers": 0}}})  # none here, and no door for others to join
    remote = parse_config({"transcribe": {"cpu": {"workers": 0}, "pool": {"listen": "tcp://127.0.0.1:5599"}}})
    assert "transcribe_cpu" not in topology.active_stages(remote) and topology.remote_only(remote) == ["transcribe_cpu"]


def test_remote_workers_listen_on_loopback_or_with_curve_only():
    assert parse_config({"transcribe": {"pool": {"listen": "tcp://127.0.0.1:5599"}}}).transcribe.pool.listen
    for listen, error in (("tcp://0.0.0.0:5599", "CURVE|curve"), ("ipc:///tmp/p.sock", "tcp://")):
        with pytest.raises(ConfigError, match=error):
            parse_config({"transcribe": {"pool": {"listen": listen}}})


def test_loopback_tcp_and_ipc_endpoints_are_accepted():
    for endpoint in ("tcp://127.0.0.1:5555", "tcp://localhost:5555", "ipc:///tmp/x.sock"):
        assert PipelineConfig.model_validate({"endpoints": {"transcripts": endpoint}})


def test_model_paths_outside_the_configured_dirs_are_refused(tmp_path):
    outside = {"transcribe": {"cpu": {"models": ["/etc/../tmp/not-allowed", "base"]}}}
    with pytest.raises(ConfigError, match="neither a registered model"):
        parse_config({"models": {"cache_dir": str(tmp_path / "cache")}, **outside})
    with pytest.raises(ConfigError, match="neither a registered model"):  # no escaping with ..
        parse_config({"models": {"allowed_dirs": [str(tmp_path)]},
                      "transcribe": {"cpu": {"models": [str(tmp_path / ".." / "elsewhere")]}}})
    ok = parse_config({"models": {"allowed_dirs": [str(tmp_path)]}, "transcribe": {"cpu": {"models": [str(tmp_path / "m")]}}})
    assert ok.transcribe.cpu.models == [str(tmp_path / "m")]


def test_fault_injection_is_refused_unless_the_test_environment_allows_it(monkeypatch):
    monkeypatch.delenv(FAULTS_ALLOWED_ENV, raising=False)
    with pytest.raises(ConfigError, match="inject_fault is for tests"):
        load_config(None, {"transcribe": {"inject_fault": "hang"}})
    monkeypatch.setenv(FAULTS_ALLOWED_ENV, "1")
    assert load_config(None, {"transcribe": {"inject_fault": "hang"}}).transcribe.inject_fault == "hang"
