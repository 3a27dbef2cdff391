"""The driver of an end-to-end test: runs its scenario under a give-up alarm, always stops what
the scenario started, and ends with one PASS or FAIL line and the exit status."""
import shutil
import signal
import tempfile
import time
import traceback

from harness.waiting import STARTED, TestFailure


def find_program(name):
    """The program's path, looking in /usr/sbin and /sbin too: Debian installs servers there,
    and a plain user's PATH may lack them. None when it is nowhere."""
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")


def run_scenario(make_scenario, *, timeout, keep, workdir_prefix, summary):
    """make_scenario(workdir) returns an object with run() and stop(passed) -> [problems], and
    optionally `current`, the step running, which a failure names. summary(scenario) is the
    text after PASS. Returns the exit status: 0 when run() passed and stop() found nothing."""

    def give_up(signum, _frame):
        raise TestFailure(f"timed out after {timeout}s" if signum == signal.SIGALRM
                          else "terminated")
    signal.signal(signal.SIGALRM, give_up)
    signal.signal(signal.SIGTERM, give_up)
    signal.alarm(timeout)

    workdir = tempfile.mkdtemp(prefix=workdir_prefix)
    scenario = None
    failure = None

    def where():
        step = getattr(scenario, "current", None) if scenario else "setup"
        return f"{step}: " if step else ""
    try:
        scenario = make_scenario(workdir)
        scenario.run()
    except TestFailure as e:
        failure = f"{where()}{e}"
    except Exception:
        failure = f"{where()}unexpected error\n{traceback.format_exc()}"
    finally:
        # Cleanup is bounded on its own: each stop waits a bounded time before SIGKILL.
        signal.alarm(0)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        if scenario:
            try:
                problems = scenario.stop(passed=failure is None)
            except Exception:
                problems = [f"cleanup failed:\n{traceback.format_exc()}"]
            if failure is None and problems:
                failure = "\n".join(problems)
        if keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    if failure:
        print(f"FAIL: {failure}", flush=True)
        return 1
    print(f"PASS: {summary(scenario)} ({time.monotonic() - STARTED:.1f}s)", flush=True)
    return 0
