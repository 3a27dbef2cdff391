"""Deadlines for the Prometheus integration test: every wait is bounded and says what it
was waiting for when it gives up."""
import time


class TestFailure(Exception):
    """The test found something wrong; the message says what."""


def wait_until(predicate, timeout, what, interval=0.1):
    """Calls predicate until it returns a true value, which is returned. Raises TestFailure
    naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TestFailure(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)
