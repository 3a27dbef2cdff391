#!/usr/bin/env python3
"""Checks the shardcast Grafana dashboard; run in CI. Python 3 standard library only.

    check_dashboard.py [DASHBOARD]          validate (default: shardcast.json beside this file)
    check_dashboard.py --exprs [DASHBOARD]  validate, then print "panel title<TAB>expr" for
                                            every target, with the dashboard variables
                                            replaced so that Prometheus can evaluate it

Validation: __inputs and __requires are present and name the panel types used; every panel
and target uses a data source that is an input or a datasource variable; every target has
expr, refId and legendFormat; panel ids are unique; every panel has a gridPos inside the
24-column grid, and every panel but a row a description (what it shows, and what a bad value
means); every variable an expr uses is defined. Exits 1 with one line per problem.
"""

import argparse
import json
import re
import sys
from pathlib import Path

# What --exprs puts in place of each variable: every job and instance, a 1m rate window.
SUBSTITUTIONS = {
    "job": ".*",
    "instance": ".*",
    "__rate_interval": "1m",
    "__interval": "1m",
    "__range": "5m",
}
BUILTIN_VARIABLES = {"__rate_interval", "__interval", "__range", "__interval_ms",
                     "__range_s", "__range_ms"}

# $name, ${name} and ${name:format}.
VARIABLE = re.compile(r"\$(?:\{(\w+)(?::\w+)?\}|(\w+))")


def variable_name(match):
    return match.group(1) or match.group(2)


def flatten_panels(panels):
    """Top-level panels, and the panels inside collapsed rows."""
    for panel in panels:
        yield panel
        yield from flatten_panels(panel.get("panels") or [])


def datasource_problem(datasource, names, where):
    """None if datasource refers to one of names as ${NAME} or $NAME, else what is wrong."""
    uid = datasource.get("uid") if isinstance(datasource, dict) else datasource
    if not isinstance(uid, str):
        return f"{where}: no datasource"
    match = VARIABLE.fullmatch(uid)
    if not match or variable_name(match) not in names:
        return f"{where}: datasource {uid!r} is neither an __inputs entry nor a datasource " \
               f"variable ({', '.join(sorted(names))})"
    if isinstance(datasource, dict) and datasource.get("type", "prometheus") != "prometheus":
        return f"{where}: datasource type {datasource.get('type')!r} is not prometheus"
    return None


def check(dashboard):
    problems = []

    for key in ("title", "uid"):
        if not isinstance(dashboard.get(key), str) or not dashboard[key]:
            problems.append(f"dashboard: missing {key}")
    if not isinstance(dashboard.get("schemaVersion"), int):
        problems.append("dashboard: missing schemaVersion")

    inputs = dashboard.get("__inputs")
    input_names = set()
    if not isinstance(inputs, list) or not inputs:
        problems.append("dashboard: missing __inputs")
    else:
        for entry in inputs:
            if entry.get("type") == "datasource" and entry.get("pluginId") == "prometheus":
                input_names.add(entry.get("name"))
        if not input_names:
            problems.append("__inputs: no Prometheus datasource input")

    requires = dashboard.get("__requires")
    required = set()
    if not isinstance(requires, list) or not requires:
        problems.append("dashboard: missing __requires")
    else:
        required = {(r.get("type"), r.get("id")) for r in requires}
        for need in (("grafana", "grafana"), ("datasource", "prometheus")):
            if need not in required:
                problems.append(f"__requires: missing {need[0]} {need[1]}")

    variables = (dashboard.get("templating") or {}).get("list") or []
    variable_names = {v.get("name") for v in variables}
    datasource_names = input_names | {v.get("name") for v in variables
                                      if v.get("type") == "datasource"}
    for variable in variables:
        if variable.get("type") == "query":
            problem = datasource_problem(variable.get("datasource"), datasource_names,
                                         f"variable {variable.get('name')}")
            if problem:
                problems.append(problem)
    known_variables = variable_names | BUILTIN_VARIABLES

    panels = list(flatten_panels(dashboard.get("panels") or []))
    if not panels:
        problems.append("dashboard: no panels")
    ids = {}
    unrequired_types = set()
    for index, panel in enumerate(panels):
        where = f"panel {panel.get('title') or index!r}"
        panel_id = panel.get("id")
        if not isinstance(panel_id, int):
            problems.append(f"{where}: missing id")
        elif panel_id in ids:
            problems.append(f"{where}: id {panel_id} is also used by panel {ids[panel_id]!r}")
        else:
            ids[panel_id] = panel.get("title")

        grid = panel.get("gridPos")
        if not isinstance(grid, dict) or not all(isinstance(grid.get(k), int)
                                                 for k in ("h", "w", "x", "y")):
            problems.append(f"{where}: missing gridPos (h, w, x, y)")
        elif grid["w"] < 1 or grid["x"] < 0 or grid["x"] + grid["w"] > 24:
            problems.append(f"{where}: gridPos outside the 24-column grid")

        if panel.get("type") == "row":
            continue
        if not panel.get("title"):
            problems.append(f"{where}: missing title")
        if not isinstance(panel.get("description"), str) or not panel["description"].strip():
            problems.append(f"{where}: missing description")
        if ("panel", panel.get("type")) not in required:
            unrequired_types.add(panel.get("type"))
        problem = datasource_problem(panel.get("datasource"), datasource_names, where)
        if problem:
            problems.append(problem)

        targets = panel.get("targets")
        if not isinstance(targets, list) or not targets:
            problems.append(f"{where}: no targets")
            continue
        ref_ids = set()
        for target in targets:
            ref_id = target.get("refId")
            target_where = f"{where} target {ref_id or '?'}"
            if not isinstance(ref_id, str) or not ref_id:
                problems.append(f"{target_where}: missing refId")
            elif ref_id in ref_ids:
                problems.append(f"{target_where}: duplicate refId")
            ref_ids.add(ref_id)
            expr = target.get("expr")
            if not isinstance(expr, str) or not expr.strip():
                problems.append(f"{target_where}: missing expr")
            else:
                for match in VARIABLE.finditer(expr):
                    if variable_name(match) not in known_variables:
                        problems.append(f"{target_where}: unknown variable {match.group(0)}")
            if not isinstance(target.get("legendFormat"), str):
                problems.append(f"{target_where}: missing legendFormat")
            if "datasource" in target:
                problem = datasource_problem(target["datasource"], datasource_names,
                                             target_where)
                if problem:
                    problems.append(problem)
    if required:
        problems += [f"__requires: missing panel {t}" for t in sorted(unrequired_types)]
    return problems


def substitute(expr):
    def replace(match):
        name = variable_name(match)
        if name not in SUBSTITUTIONS:
            raise ValueError(f"no substitution for {match.group(0)} in {expr!r}")
        return SUBSTITUTIONS[name]

    return " ".join(VARIABLE.sub(replace, expr).split())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dashboard", nargs="?",
                        default=Path(__file__).resolve().parent / "shardcast.json")
    parser.add_argument("--exprs", action="store_true",
                        help="print 'panel title<TAB>expr' per target, variables substituted")
    args = parser.parse_args()

    try:
        with open(args.dashboard, encoding="utf-8") as f:
            dashboard = json.load(f)
    except (OSError, ValueError) as e:
        print(f"{args.dashboard}: {e}", file=sys.stderr)
        return 1
    if not isinstance(dashboard, dict):
        print(f"{args.dashboard}: not a JSON object", file=sys.stderr)
        return 1

    problems = check(dashboard)
    if problems:
        for problem in problems:
            print(f"{args.dashboard}: {problem}", file=sys.stderr)
        return 1

    if args.exprs:
        lines = []
        for panel in flatten_panels(dashboard["panels"]):
            for target in panel.get("targets") or []:
                try:
                    lines.append(f"{panel['title']}\t{substitute(target['expr'])}")
                except ValueError as e:
                    print(f"{args.dashboard}: {e}", file=sys.stderr)
                    return 1
        print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
