"""Prometheus's HTTP API (https://prometheus.io/docs/prometheus/latest/querying/api/), the
few calls the test makes. Errors come back as QueryError with Prometheus's own message."""
import json
import time
import urllib.error
import urllib.parse
import urllib.request


class QueryError(Exception):
    pass


class PrometheusApi:
    def __init__(self, port):
        self._base = f"http://127.0.0.1:{port}/api/v1"

    def _get(self, path, params=()):
        url = f"{self._base}/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                body = json.load(response)
        except urllib.error.HTTPError as e:
            # Bad queries are answered 400/422 with a JSON error body.
            try:
                body = json.load(e)
            except ValueError:
                raise QueryError(f"HTTP {e.code} from {path}") from None
        except (urllib.error.URLError, OSError) as e:
            raise QueryError(f"{path}: {e}") from None
        if body.get("status") != "success":
            raise QueryError(f"{body.get('errorType', 'error')}: {body.get('error', body)}")
        return body["data"]

    def query(self, expr):
        """Instant query at the current time: (resultType, result)."""
        data = self._get("query", [("query", expr)])
        return data["resultType"], data["result"]

    def range_values(self, expr, seconds, step=1):
        """A range query over the last `seconds`: {frozenset(labels.items()): [float]}, each
        series' values in time order (NaN included, as Prometheus returns them)."""
        end = time.time()
        data = self._get("query_range", [("query", expr), ("start", f"{end - seconds:.3f}"),
                                         ("end", f"{end:.3f}"), ("step", str(step))])
        if data["resultType"] != "matrix":
            raise QueryError(f"expected a matrix, got {data['resultType']}")
        return {frozenset(s["metric"].items()): [float(v) for _, v in s["values"]]
                for s in data["result"]}

    def vector(self, expr):
        """An instant vector as {frozenset(labels.items()): float}."""
        kind, result = self.query(expr)
        if kind != "vector":
            raise QueryError(f"expected a vector, got {kind}")
        return {frozenset(s["metric"].items()): float(s["value"][1]) for s in result}

    def scalar(self, expr):
        """The value of a query that yields one series, or None if it yields none."""
        values = list(self.vector(expr).values())
        if len(values) > 1:
            raise QueryError(f"expected one series, got {len(values)}")
        return values[0] if values else None

    def label_values(self, label, match=None):
        params = [("match[]", match)] if match else []
        return self._get(f"label/{urllib.parse.quote(label)}/values", params)

    def targets(self):
        """The active scrape targets, each with its health and last error."""
        return self._get("targets")["activeTargets"]

    def rules(self):
        """Every loaded rule, each a dict with its group's name added as "group"."""
        out = []
        for group in self._get("rules")["groups"]:
            for rule in group["rules"]:
                out.append(dict(rule, group=group["name"]))
        return out
