"""What the Python end-to-end tests share: starting and stopping the real binaries
(processes.py) and bounded waits with their log lines (waiting.py). Standard library only."""
