#!/usr/bin/env python3
"""Checks that no function in dispatcher/ or transport/ is longer than 60 lines
(ctest FunctionsFitOnAScreen). A function's length is counted from the line of its opening
brace to the line of its closing one, lambdas inside it included.

The C++ is read lexically: comments, string and character literals are blanked out, then a
brace that opens right after a parameter list's ')' (with any qualifiers, an initializer
list or a trailing return type between) at namespace or class level is a function body.
Good enough for this code base's style (clang-formatted); it never reports a false length,
only possibly misses an oddly written function.

Usage: check_function_length.py SOURCE_DIR [--limit N]
"""
import argparse
import re
import sys
from pathlib import Path

DIRS = ("dispatcher", "transport")


def blank_literals(text):
    """Comments, strings and chars replaced by spaces, newlines kept, so lines still count."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif text.startswith('R"', i):
            m = re.match(r'R"([^(]*)\(', text[i:])
            end = text.find(")" + m.group(1) + '"', i) + len(m.group(1)) + 2
            out.append(re.sub(r"[^\n]", " ", text[i:end]))
            i = end
        elif c == "'" and i > 0 and text[i - 1].isalnum():
            out.append(c)  # a digit separator, as in 5'000
            i += 1
        elif c in "\"'":
            j = i + 1
            while j < n and text[j] != c:
                j += 2 if text[j] == "\\" else 1
            out.append(" " * (j + 1 - i))
            i = j + 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


# What may stand between a parameter list's ')' and the body's '{'.
BODY_AFTER_PARAMS = re.compile(
    r"\)\s*(const|noexcept|override|final|mutable|->\s*[\w:<>,\s*&]+|\s)*"
    r"(:\s*[\w:]+\s*[({][^;]*)?\s*$", re.S)


def functions(code):
    """(name line, first line, last line) of each function body at namespace/class level."""
    found = []
    stack = []  # True for a function body (or anything inside one)
    line = 1
    start = 0  # where the text before the current brace begins
    for i, c in enumerate(code):
        if c == "\n":
            line += 1
        elif c == "{":
            inside = bool(stack) and stack[-1][0]
            head = code[start:i]
            is_function = not inside and BODY_AFTER_PARAMS.search(head) is not None \
                and not re.search(r"\b(namespace|class|struct|enum|union)\b[^;{}]*$", head)
            stack.append((inside or is_function, line, is_function))
            start = i + 1
        elif c == "}":
            if stack:
                _, first, is_function = stack.pop()
                if is_function:
                    found.append((first, line))
            start = i + 1
        elif c == ";":
            start = i + 1
    return found


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source")
    parser.add_argument("--limit", type=int, default=60)
    args = parser.parse_args()
    root = Path(args.source)
    problems = []
    count = 0
    for directory in DIRS:
        for path in sorted((root / directory).glob("*.[ch]pp")):
            raw = path.read_text()
            code = blank_literals(raw)
            lines = raw.splitlines()
            for first, last in functions(code):
                count += 1
                length = last - first + 1
                if length > args.limit:
                    signature = lines[first - 1].strip() or lines[first - 2].strip()
                    problems.append(f"{path.relative_to(root)}:{first}: {length} lines "
                                    f"(limit {args.limit}): {signature}")
    if problems:
        print(f"{len(problems)} functions over {args.limit} lines:")
        print("\n".join(problems))
        return 1
    print(f"{count} functions in {', '.join(DIRS)}: none over {args.limit} lines")
    return 0


if __name__ == "__main__":
    sys.exit(main())
