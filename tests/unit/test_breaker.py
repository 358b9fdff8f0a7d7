from pipeline.transcription.breaker import BreakerState, CircuitBreaker


def test_opens_after_consecutive_failures_then_lets_one_trial_through(fake_clock):
    b = CircuitBreaker(failure_threshold=2, cooldown_s=30, clock=fake_clock)
    b.record_failure()
    assert b.allow() and b.state is BreakerState.CLOSED
    b.record_failure()
    assert b.state is BreakerState.OPEN and not b.allow()
    fake_clock.advance(30)
    assert b.state is BreakerState.HALF_OPEN
    assert b.allow() and not b.allow()  # exactly one trial
    b.record_success()
    assert b.state is BreakerState.CLOSED and b.allow()


def test_failed_trial_reopens_for_a_full_cooldown(fake_clock):
    b = CircuitBreaker(failure_threshold=1, cooldown_s=10, clock=fake_clock)
    b.record_failure()
    fake_clock.advance(10)
    assert b.allow()
    b.record_failure()
    assert b.state is BreakerState.OPEN
    fake_clock.advance(9)
    assert not b.allow()


def test_success_resets_the_count(fake_clock):
    b = CircuitBreaker(failure_threshold=2, clock=fake_clock)
    b.record_failure()
    b.record_success()
    b.record_failure()
    assert b.state is BreakerState.CLOSED
