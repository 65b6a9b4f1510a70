"""The back-off of failed logins on a clock of the test's own: doubling, cap, parallel guesses, forgetting."""

import pytest

from tandem.auth import throttle
from tandem.auth.throttle import BASE_DELAY, FORGET_AFTER, FREE_FAILURES, MAX_DELAY, LoginThrottle
from tandem.errors import TooManyRequests


@pytest.fixture
def clock(monkeypatch) -> list[float]:
    now = [1000.0]
    monkeypatch.setattr(throttle.time, "monotonic", lambda: now[0])
    return now


def fail(guard: LoginThrottle, user: str = "u", source: str = "s") -> None:
    guard.begin(user, source)
    guard.failed(user, source)


def refused_for(guard: LoginThrottle, user: str = "u", source: str = "s") -> float:
    with pytest.raises(TooManyRequests) as refused:
        guard.begin(user, source)
    return refused.value.retry_after


def test_the_back_off_doubles_up_to_its_cap_and_a_success_clears_it(clock):
    guard = LoginThrottle()
    for _ in range(FREE_FAILURES):
        fail(guard)
    delays = []
    for _ in range(12):
        delays.append(refused_for(guard))
        clock[0] += delays[-1]
        fail(guard)
    assert delays[:3] == [BASE_DELAY, 2 * BASE_DELAY, 4 * BASE_DELAY] and delays[-1] == MAX_DELAY
    guard.begin("u", "other")  # the user from elsewhere
    clock[0] += MAX_DELAY
    guard.begin("u", "s")
    guard.succeeded("u", "s")
    fail(guard)  # one failure after a success: no back-off
    guard.begin("u", "s")
    assert guard.stats().model_dump() == {"failed": FREE_FAILURES + 13, "throttled": 12, "backing_off": 0}


def test_parallel_guesses_count_before_they_end_and_old_failures_are_forgotten(clock):
    guard = LoginThrottle()
    for _ in range(FREE_FAILURES):
        guard.begin("u", "s")  # none has failed yet
    assert refused_for(guard) == BASE_DELAY
    for _ in range(FREE_FAILURES):
        guard.failed("u", "s")
    clock[0] += FORGET_AFTER
    for _ in range(FREE_FAILURES):
        fail(guard)
    assert refused_for(guard) == BASE_DELAY
