#!/usr/bin/python3
"""Keeps README.md a front door (ctest ReadmeIsShortAndLinksEveryPage): at most 250 lines,
an example of at most 10 lines (its first ```python block), and a link to every page of
docs/ and to bench/README.md, where the reference material lives.

    check_readme.py <source dir>

Python 3 standard library only. Exits 1 with one line per problem.
"""
import glob
import os
import re
import sys

MAX_LINES = 250
MAX_EXAMPLE_LINES = 10
PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```$", re.M | re.S)
LINK_TARGET = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def main():
    if len(sys.argv) != 2:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    source = os.path.abspath(sys.argv[1])
    with open(os.path.join(source, "README.md"), encoding="utf-8") as f:
        text = f.read()
    problems = []
    lines = text.rstrip("\n").count("\n") + 1
    if lines > MAX_LINES:
        problems.append(f"README.md has {lines} lines, more than {MAX_LINES}: move reference "
                        "material into docs/ and link it")
    example = PYTHON_BLOCK.search(text)
    if not example:
        problems.append("README.md has no ```python example")
    elif example.group(1).count("\n") > MAX_EXAMPLE_LINES:
        problems.append(f"README.md's example has {example.group(1).count(chr(10))} lines, "
                        f"more than {MAX_EXAMPLE_LINES}")
    linked = {os.path.normpath(target) for target in LINK_TARGET.findall(text)}
    pages = sorted(os.path.relpath(p, source)
                   for p in glob.glob(os.path.join(source, "docs", "*.md")))
    pages.append(os.path.join("bench", "README.md"))
    problems += [f"README.md does not link {page}" for page in pages if page not in linked]
    for problem in problems:
        print(f"FAILED: {problem}", file=sys.stderr)
    if problems:
        return 1
    print(f"README.md: {lines} lines (at most {MAX_LINES}), a "
          f"{example.group(1).count(chr(10))}-line example, links to all {len(pages)} pages")
    return 0


if __name__ == "__main__":
    sys.exit(main())
