"""Helpers for prometheus_test.py: processes, a hand-written WebSocket client, the
Prometheus HTTP API and the dashboard's queries. Standard library only."""
