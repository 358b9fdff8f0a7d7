from pipeline.config import RestartConfig
from pipeline.exitcodes import ExitCode
from pipeline.policy import Backoff, Failover, GiveUp, Restart, RestartPolicy, choose_active

CFG = RestartConfig(backoff_initial_s=0.5, backoff_max_s=30, max_restarts=3, window_s=60, stable_after_s=10,
                    gpu_recheck_s=300)


def policy():
    return RestartPolicy(CFG, "transcribe_gpu", "transcribe_cpu", rng=lambda: 1.0)


def test_backoff_doubles_from_half_a_second_to_the_cap():
    backoff = Backoff(0.5, 30, rng=lambda: 1.0)
    assert [backoff.delay_s(n) for n in (1, 2, 3, 4)] == [0.5, 1.0, 2.0, 4.0]
    assert backoff.delay_s(20) == 30


def test_backoff_jitter_stays_within_half_to_full_step():
    assert Backoff(0.5, 30, rng=lambda: 0.0).delay_s(3) == 1.0


def test_crash_restarts_with_growing_delay(fake_clock):
    p = policy()
    delays = []
    for _ in range(3):
        decision = p.on_failure("vad", 1, fake_clock())
        assert isinstance(decision, Restart)
        delays.append(decision.after_s)
        fake_clock.advance(1)
    assert delays == [0.5, 1.0, 2.0]


def test_flapping_stage_is_given_up(fake_clock):
    p = policy()
    decisions = []
    for _ in range(4):
        decisions.append(p.on_failure("vad", 1, fake_clock()))
        fake_clock.advance(1)
    assert isinstance(decisions[-1], GiveUp)


def test_failures_reset_after_a_stable_ready_stretch(fake_clock):
    p = policy()
    for _ in range(3):
        p.on_failure("vad", 1, fake_clock())
        fake_clock.advance(1)
    p.on_ready("vad", fake_clock())
    fake_clock.advance(CFG.stable_after_s + 1)
    decision = p.on_failure("vad", 1, fake_clock())
    assert decision == Restart(0.5)


def test_old_failures_leave_the_window(fake_clock):
    p = policy()
    for _ in range(3):
        p.on_failure("vad", 1, fake_clock())
    fake_clock.advance(CFG.window_s + 1)
    assert isinstance(p.on_failure("vad", 1, fake_clock()), Restart)


def test_config_error_is_never_restarted(fake_clock):
    assert isinstance(policy().on_failure("sink", ExitCode.CONFIG_ERROR, fake_clock()), GiveUp)


def test_gpu_unavailable_or_absent_fails_over_to_the_cpu_worker(fake_clock):
    for code in (ExitCode.GPU_UNAVAILABLE, ExitCode.NO_GPU):
        decision = policy().on_failure("transcribe_gpu", code, fake_clock())
        assert decision == Failover("transcribe_cpu", 300)


def test_flapping_gpu_worker_fails_over_instead_of_giving_up(fake_clock):
    p = policy()
    for _ in range(4):
        decision = p.on_failure("transcribe_gpu", 1, fake_clock())
    assert decision == Failover("transcribe_cpu", 300)


def test_route_prefers_the_gpu_and_comes_back_to_it():
    order = ("transcribe_gpu", "transcribe_cpu")
    assert choose_active({"transcribe_cpu"}, order) == "transcribe_cpu"
    assert choose_active({"transcribe_cpu", "transcribe_gpu"}, order) == "transcribe_gpu"
    assert choose_active(set(), order) is None
