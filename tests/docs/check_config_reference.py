#!/usr/bin/python3
"""Checks the documented configuration keys against the binary's own table of them (ctest
ConfigReferenceMatchesTheFieldTable). main/config.cpp holds the one table of keys, with each
key's default and meaning; `shardcast --config-reference` prints it as Markdown.

    check_config_reference.py --shardcast <binary> --source <dir> [--write]

Checks:
  1. docs/configuration.md holds that output exactly, between the lines
     <!-- config-reference:begin --> and <!-- config-reference:end -->;
  2. `shardcast --help` names every key;
  3. deploy/shardcast.yaml shows every key at its place in the nesting (a.b.c is `c:` under
     `b:` under `a:`), set or commented out (`# c:`), sets no key the table lacks, and where it
     sets a key whose default is a plain value, sets it to that default (`""` and an empty
     string are equal, `[]` and an empty list too).
--write replaces the table in docs/configuration.md with the binary's output first, which is
how to update it after a key changes.
Python 3 with PyYAML (a dependency of yamllint). Exits 1 with one line per problem, naming
the key.
"""
import argparse
import difflib
import os
import re
import subprocess
import sys

import yaml

BEGIN = "<!-- config-reference:begin -->"
END = "<!-- config-reference:end -->"
ROW = re.compile(r"^\| `([^`]+)` \| (.*) \| (.*) \|$")
# A key line of the YAML file, set (`key: value`) or commented out (`# key: value`, its
# indentation that of the text after "# "). A commented-out key has a lowercase name and at
# most one word or quoted string after it, so that a sentence in a comment ("# Durations:
# 250ms, 30s", "# true: a client without a token ...") is not taken for one.
KEY_LINE = re.compile(r"^(?P<indent> *)(?P<key>[a-z][a-z0-9_]*):(?:\s|$)")
COMMENTED_KEY_LINE = re.compile(
    r"^(?P<indent> *)# (?P<inner> *)(?P<key>[a-z][a-z0-9_]*):"
    r"(?:[ \t]+(?:\S+|\"[^\"]*\"|'[^']*'))?[ \t]*$")


def run(binary, *args):
    result = subprocess.run([binary, *args], capture_output=True, text=True, timeout=30)
    if result.returncode != 0:
        sys.exit(f"FAILED: {binary} {' '.join(args)} exited {result.returncode}:\n"
                 f"{result.stderr}")
    return result.stdout


def table_rows(reference):
    """{key: default cell} of the Markdown table, in order."""
    rows = {}
    for line in reference.splitlines():
        match = ROW.match(line)
        if match:
            rows[match.group(1)] = match.group(2)
    return rows


def documented_table(text):
    """The lines between the markers, blank lines at either end left out; None without both
    markers."""
    lines = text.split("\n")
    if BEGIN not in lines or END not in lines or lines.index(END) < lines.index(BEGIN):
        return None
    inner = lines[lines.index(BEGIN) + 1:lines.index(END)]
    while inner and not inner[0].strip():
        inner.pop(0)
    while inner and not inner[-1].strip():
        inner.pop()
    return inner


def write_table(path, reference):
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    if BEGIN not in lines or END not in lines:
        sys.exit(f"FAILED: {path} has no {BEGIN} ... {END} lines to write the table between")
    start, end = lines.index(BEGIN), lines.index(END)
    lines[start + 1:end] = reference.rstrip("\n").split("\n")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines))


def check_documented(path, reference):
    with open(path, encoding="utf-8") as f:
        inner = documented_table(f.read())
    if inner is None:
        return [f"{path}: no table between the lines {BEGIN} and {END}"]
    expected = reference.rstrip("\n").split("\n")
    if inner == expected:
        return []
    documented, actual = table_rows("\n".join(inner)), table_rows(reference)
    problems = [f"{path}: key {key} is documented but is not in the binary's table"
                for key in documented if key not in actual]
    problems += [f"{path}: key {key} is missing from the documented table"
                 for key in actual if key not in documented]
    problems += [f"{path}: key {key}: the documented row differs from the binary's"
                 for key in actual if key in documented
                 and next(line for line in inner if line.startswith(f"| `{key}` "))
                 != next(line for line in expected if line.startswith(f"| `{key}` "))]
    diff = "\n".join(difflib.unified_diff(inner, expected, "documented", "shardcast "
                                          "--config-reference", lineterm="", n=0))
    problems.append(f"{path}: the table differs from `shardcast --config-reference`; "
                    f"regenerate it with {os.path.basename(__file__)} --write:\n{diff}")
    return problems


def check_help(help_text, keys):
    return [f"--help: key {key} is not mentioned" for key in keys
            if not re.search(rf"(?<![\w.]){re.escape(key)}(?![\w.])", help_text)]


def yaml_key_lines(text):
    """{dotted key: [(line number, set?)]} for every key line, set or commented out. A set key
    sits under the set keys above it with less indentation. A commented-out one sits under
    the commented-out key just above it with less indentation (a section commented out
    whole), or else under those set keys. Comments never end a section."""
    found = {}
    sections = []  # (indent, name) of the set keys enclosing the current line
    commented = []  # (indent, dotted path) of the commented-out keys since the last set line
    for number, line in enumerate(text.split("\n"), 1):
        match = KEY_LINE.match(line)
        if match:
            indent = len(match.group("indent"))
            while sections and sections[-1][0] >= indent:
                sections.pop()
            path = [name for _, name in sections]
            sections.append((indent, match.group("key")))
            commented = []
        else:
            match = COMMENTED_KEY_LINE.match(line)
            if not match:
                continue
            indent = len(match.group("indent")) + len(match.group("inner"))
            while commented and commented[-1][0] >= indent:
                commented.pop()
            path = commented[-1][1] if commented else [n for i, n in sections if i < indent]
            commented.append((indent, path + [match.group("key")]))
        key = ".".join(path + [match.group("key")])
        found.setdefault(key, []).append((number, match.re is KEY_LINE))
    return found


def lookup(tree, key):
    """(found?, value) of a dotted key in the loaded YAML."""
    node = tree
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node


def plain_default(cell):
    """(True, value) when the table's default cell is a plain value: one code span holding a
    YAML scalar or list, with no prose in it; else (False, None)."""
    match = re.fullmatch(r"`([^`]*)`", cell.strip())
    if not match or re.search(r"\s", match.group(1)):
        return False, None
    try:
        value = yaml.safe_load(match.group(1))
    except yaml.YAMLError:
        return False, None
    if isinstance(value, dict):
        return False, None
    return True, value


def normalised(value):
    """A value as a comparable string: YAML's null and "" are both empty, a list is its
    normalised items."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return [normalised(v) for v in value]
    return str(value)


def check_example_config(path, rows):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    tree = yaml.safe_load(text) or {}
    lines = yaml_key_lines(text)
    problems = []
    for key, default_cell in rows.items():
        present, value = lookup(tree, key)
        if not present and key not in lines:
            leaf = key.rsplit(".", 1)[-1]
            elsewhere = sorted(k for k in lines if k.rsplit(".", 1)[-1] == leaf)
            where = f" (only as {', '.join(elsewhere)}: wrong nesting)" if elsewhere else ""
            problems.append(f"{path}: key {key} is neither set nor commented out{where}")
            continue
        if not present:
            continue
        plain, default = plain_default(default_cell)
        if plain and normalised(value) != normalised(default):
            line = next(n for n, is_set in lines.get(key, [(0, True)]) if is_set)
            problems.append(f"{path}:{line}: key {key} is set to {value!r}, but its default "
                            f"is {default_cell}; the example file sets only defaults")
    # Set keys the table lacks: --check-config refuses them too, but name them here.
    for key, places in lines.items():
        if key in rows or any(k.startswith(key + ".") for k in rows):
            continue
        for line, is_set in places:
            what = "sets" if is_set else "comments out"
            problems.append(f"{path}:{line}: {what} key {key}, which is not a configuration key")
    return problems


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shardcast", required=True, help="the shardcast binary")
    parser.add_argument("--source", required=True, help="the repository root")
    parser.add_argument("--write", action="store_true",
                        help="write the binary's table into docs/configuration.md first")
    args = parser.parse_args()

    reference = run(args.shardcast, "--config-reference")
    rows = table_rows(reference)
    if not rows:
        sys.exit(f"FAILED: `{args.shardcast} --config-reference` printed no table:\n{reference}")
    documentation = os.path.join(args.source, "docs", "configuration.md")
    if args.write:
        write_table(documentation, reference)

    problems = check_documented(documentation, reference)
    problems += check_help(run(args.shardcast, "--help"), rows)
    problems += check_example_config(os.path.join(args.source, "deploy", "shardcast.yaml"), rows)
    for problem in problems:
        print(f"FAILED: {problem}", file=sys.stderr)
    if problems:
        return 1
    print(f"{len(rows)} configuration keys: docs/configuration.md holds the binary's table, "
          "--help names every key, and deploy/shardcast.yaml shows each one with its default")
    return 0


if __name__ == "__main__":
    sys.exit(main())
