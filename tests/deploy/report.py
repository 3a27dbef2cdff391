"""The ending the deploy checks share: every problem on stderr and exit 1, or the one line
that says what checked out."""
import sys


def report(problems, ok_line):
    for problem in problems:
        print(f"FAILED: {problem}", file=sys.stderr)
    if problems:
        sys.exit(1)
    print(ok_line)
