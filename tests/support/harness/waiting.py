"""Deadlines and log lines for the end-to-end tests: every wait is bounded and says what it
was waiting for when it gives up. Any thread may call these."""
import time

STARTED = time.monotonic()


class TestFailure(Exception):
    """The test found something wrong; the message says what was expected and what was seen."""


def log(text):
    print(f"[{time.monotonic() - STARTED:6.1f}s] {text}", flush=True)


def wait_until(predicate, timeout, what, interval=0.1):
    """Calls predicate until it returns a true value, which is returned. Raises TestFailure
    naming `what` after `timeout` seconds. `what` may be a callable, evaluated only on
    failure, so the message can say what was seen last."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            text = what() if callable(what) else what
            raise TestFailure(f"timed out after {timeout:g}s waiting for {text}")
        time.sleep(interval)
