"""The PromQL queries of a Grafana dashboard, with template variables substituted the way
deploy/grafana/check_dashboard.py does it: $job and $instance (every query variable) match
everything (".*"), $__rate_interval and $__interval become 1m, $__range 5m.

Two sources, merged: check_dashboard.py --exprs when it exists, and a walk of the JSON
(panels, and the panels nested in rows), so the test never depends on the script alone.
"""
import json
import os
import re
import subprocess
import sys

from harness.waiting import TestFailure

BUILTINS = {
    "__rate_interval": "1m",
    "__interval": "1m",
    "__interval_ms": "60000",
    "__range": "5m",
    "__range_s": "300",
    "__range_ms": "300000",
}

# $name, ${name}, ${name:format} and the deprecated [[name]].
_VARIABLE = re.compile(r"\$\{(\w+)(?::[^}]*)?\}|\[\[(\w+)(?::[^\]]*)?\]\]|\$(\w+)")


def variable_values(dashboard):
    """What each template variable of `dashboard` is replaced with."""
    values = dict(BUILTINS)
    for variable in dashboard.get("templating", {}).get("list", []):
        name, kind = variable.get("name"), variable.get("type")
        if not name or kind in ("datasource", "adhoc"):
            continue
        if kind == "interval":
            values[name] = "1m"
        elif kind == "constant":
            values[name] = str(variable.get("query", ""))
        else:
            values[name] = ".*"
    return values


def substitute(text, values):
    """`text` with every known variable replaced; unknown ones are left for Prometheus to
    reject, which the test reports."""
    def replace(match):
        name = match.group(1) or match.group(2) or match.group(3)
        return values.get(name, match.group(0))
    return _VARIABLE.sub(replace, text)


def unresolved(expr):
    """The variable references left in a substituted expr: names the dashboard never
    defines."""
    return sorted({m.group(0) for m in _VARIABLE.finditer(expr)})


def _panels(panels):
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def walk_exprs(dashboard):
    """[(panel title, expr)] for every target with a PromQL expr, variables substituted."""
    values = variable_values(dashboard)
    out = []
    for panel in _panels(dashboard.get("panels", [])):
        for target in panel.get("targets", []) or []:
            expr = target.get("expr")
            if isinstance(expr, str) and expr.strip():
                out.append((panel.get("title", ""), substitute(expr, values)))
    return out


def script_exprs(source):
    """[(panel title, expr)] from deploy/grafana/check_dashboard.py --exprs, or None if the
    script does not exist. Lines are "title<TAB>expr"; a line without a tab continues the
    previous expr (a multi-line expr printed as is)."""
    script = os.path.join(source, "deploy", "grafana", "check_dashboard.py")
    if not os.path.exists(script):
        return None
    run = subprocess.run([sys.executable, script, "--exprs"], cwd=source, capture_output=True,
                         text=True, timeout=60)
    if run.returncode != 0:
        raise TestFailure(f"check_dashboard.py --exprs exited {run.returncode}:\n"
                          f"{run.stdout}{run.stderr}")
    out = []
    for line in run.stdout.splitlines():
        if "\t" in line:
            title, expr = line.split("\t", 1)
            out.append([title, expr])
        elif out:
            out[-1][1] += "\n" + line
    return [(title, expr) for title, expr in out if expr.strip()]


def normalized(expr):
    """The key two spellings of one query share (whitespace differs between the sources)."""
    return " ".join(expr.split())


def merged_exprs(dashboard, source=None):
    """The union of the script's and the walk's queries, each once, in dashboard order.
    Returns (queries, note) where note says which sources were used."""
    walked = walk_exprs(dashboard)
    scripted = script_exprs(source) if source else None
    queries, seen = [], set()
    for title, expr in (scripted or []) + walked:
        key = (title, normalized(expr))
        if key not in seen:
            seen.add(key)
            queries.append((title, expr))
    if scripted is None:
        why = "not found" if source else "not used for this dashboard"
        note = f"{len(walked)} targets from the dashboard JSON (check_dashboard.py {why})"
    else:
        note = (f"{len(scripted)} targets from check_dashboard.py --exprs, {len(walked)} from "
                f"the dashboard JSON, {len(queries)} distinct")
    return queries, note


_LABEL_VALUES = re.compile(r"^\s*label_values\(\s*(?:(.*\S)\s*,\s*)?(\w+)\s*\)\s*$", re.S)
_QUERY_RESULT = re.compile(r"^\s*query_result\((.*)\)\s*$", re.S)


def variable_queries(dashboard):
    """[(variable name, kind, argument...)] for the query variables Prometheus can answer:
    ("label_values", selector or None, label) or ("query_result", expr)."""
    values = variable_values(dashboard)
    out = []
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") != "query":
            continue
        query = variable.get("query")
        if isinstance(query, dict):
            query = query.get("query", "")
        query = substitute(query or "", values)
        match = _LABEL_VALUES.match(query)
        if match:
            out.append((variable["name"], "label_values", match.group(1), match.group(2)))
            continue
        match = _QUERY_RESULT.match(query)
        if match:
            out.append((variable["name"], "query_result", match.group(1)))
    return out


def load(path):
    with open(path) as f:
        return json.load(f)
