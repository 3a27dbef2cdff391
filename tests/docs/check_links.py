#!/usr/bin/python3
"""Checks that every relative link and image in the repository's Markdown resolves (ctest
MarkdownLinksResolve).

    check_links.py <source dir>

The files checked are the Markdown files git knows of: tracked, or new and not ignored
(`git ls-files --cached --others --exclude-standard`), so a page is checked before its first
commit. A link resolves when its path names a file or directory of that same set (so a link
into build/ or another ignored path fails, as it would on GitHub), and its #fragment, when the
target is Markdown, is the anchor of one of the target's headings under GitHub's rules:
the heading's text lowercased, punctuation other than '-' and '_' removed, spaces turned into
'-', and -1, -2, ... added to repeats. Links with a scheme (http:, https:, mailto:, ...) are
not followed. Links inside code blocks and code spans are not links.
Python 3 standard library only. Exits 1 with one line per broken link, as file:line.
"""
import difflib
import os
import posixpath
import re
import subprocess
import sys
import urllib.parse

FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
ATX_HEADING = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
# An inline code span; it may wrap onto the next line, but never across a blank line.
CODE_SPAN = re.compile(r"(`+)(?:(?!\n[ \t]*\n).)+?(?<!`)\1(?!`)", re.S)
# [text](target "title") and ![alt](target); the text may wrap, and hold one level of [].
INLINE_LINK = re.compile(
    r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]"
    r"\(\s*(<[^<>\n]*>|(?:[^\s()]|\([^\s()]*\))*)(?:\s+(?:\"[^\"]*\"|'[^']*'|\([^()]*\)))?\s*\)")
REFERENCE_DEFINITION = re.compile(r"^ {0,3}\[[^\]]+\]:[ \t]*(<[^>]*>|\S+)", re.M)
HTML_LINK = re.compile(r"<(?:a|img)\b[^>]*?\b(?:href|src)\s*=\s*[\"']([^\"']*)[\"']", re.I)
HTML_ANCHOR = re.compile(r"<a\b[^>]*?\b(?:name|id)\s*=\s*[\"']([^\"']*)[\"']", re.I)
SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def repository_files(source):
    """Paths (relative, '/'-separated) of the files git tracks or would track, that exist."""
    try:
        listed = subprocess.run(
            ["git", "-C", source, "ls-files", "--cached", "--others", "--exclude-standard",
             "-z"], check=True, capture_output=True).stdout.decode().split("\0")
    except (OSError, subprocess.CalledProcessError):
        # Not a checkout (a source tarball): every file but the usual build output.
        listed = []
        for root, dirs, files in os.walk(source):
            dirs[:] = [d for d in dirs if d != ".git" and d != "node_modules"
                       and not d.startswith("build")]
            listed += [os.path.relpath(os.path.join(root, f), source).replace(os.sep, "/")
                       for f in files]
    return {f for f in listed if f and os.path.isfile(os.path.join(source, f))}


def blank_code_blocks(text):
    """The text with fenced code blocks blanked: a '#' line inside one is not a heading."""
    lines = text.split("\n")
    fence = None
    for i, line in enumerate(lines):
        match = FENCE.match(line)
        if fence is None and match:
            fence = match.group(1)
            lines[i] = ""
        elif fence is not None:
            if match and match.group(1)[0] == fence[0] and len(match.group(1)) >= len(fence) \
                    and not line.strip().strip(fence[0]):
                fence = None
            lines[i] = ""
    return "\n".join(lines)


def blank_code(text):
    """The text with fenced code blocks and inline code spans replaced by spaces, line breaks
    kept, so offsets and line numbers still match the file."""
    return CODE_SPAN.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), blank_code_blocks(text))


def heading_text(markdown):
    """What a heading renders as: no code ticks, links as their text, no HTML tags."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", markdown)
    text = re.sub(r"<[^>]+>", "", text)
    return text.replace("`", "")


def slug(text):
    """GitHub's anchor for a heading's text."""
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def anchors(text):
    """Every anchor a Markdown file defines: its headings' slugs, numbered as GitHub numbers
    repeats, and the names of <a name=...> / id=... elements."""
    found = set()
    seen = {}
    for line in blank_code_blocks(text).split("\n"):
        match = ATX_HEADING.match(line)
        if not match:
            continue
        base = slug(heading_text(match.group(2) or ""))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    found.update(HTML_ANCHOR.findall(text))
    return found


def links(text):
    """(line number, target) of every link, image and reference definition outside code."""
    prose = blank_code(text)
    found = []
    for pattern in (INLINE_LINK, REFERENCE_DEFINITION, HTML_LINK):
        for match in pattern.finditer(prose):
            line = prose.count("\n", 0, match.start(1)) + 1
            found.append((line, match.group(1)))
    return sorted(found)


def check_link(source, page, target, files, directories, anchor_cache):
    """None when target, written in page, resolves; else what is wrong with it."""
    target = target.strip()
    if target.startswith("<") and target.endswith(">"):
        target = target[1:-1]
    if not target or SCHEME.match(target) or target.startswith("//"):
        return None
    path, _, fragment = target.partition("#")
    path = urllib.parse.unquote(path.split("?", 1)[0])
    fragment = urllib.parse.unquote(fragment)
    if not path:
        resolved = page
    elif path.startswith("/"):
        resolved = posixpath.normpath(path.lstrip("/"))
    else:
        resolved = posixpath.normpath(posixpath.join(posixpath.dirname(page), path))
    if resolved == "." or resolved.startswith("../"):
        return f"{target}: points outside the repository"
    if resolved not in files and resolved not in directories:
        if os.path.exists(os.path.join(source, resolved)):
            return f"{target}: {resolved} exists here but is not in the repository (ignored?)"
        return f"{target}: no such file {resolved}"
    if not fragment or resolved in directories or not resolved.lower().endswith(".md"):
        return None
    if resolved not in anchor_cache:
        with open(os.path.join(source, resolved), encoding="utf-8") as f:
            anchor_cache[resolved] = anchors(f.read())
    if fragment in anchor_cache[resolved]:
        return None
    close = difflib.get_close_matches(fragment, sorted(anchor_cache[resolved]), n=3)
    hint = f"; did you mean {', '.join('#' + c for c in close)}?" if close else ""
    return f"{target}: {resolved} has no heading with the anchor #{fragment}{hint}"


def main():
    if len(sys.argv) != 2:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    source = os.path.abspath(sys.argv[1])
    files = repository_files(source)
    directories = {posixpath.dirname(f) for f in files}
    for d in list(directories):
        while d:
            d = posixpath.dirname(d)
            directories.add(d)
    directories.discard("")
    pages = sorted(f for f in files if f.lower().endswith(".md"))
    problems = []
    checked = 0
    anchor_cache = {}
    for page in pages:
        with open(os.path.join(source, page), encoding="utf-8") as f:
            text = f.read()
        for line, target in links(text):
            bare = target.strip().strip("<>")
            if not bare or SCHEME.match(bare) or bare.startswith("//"):
                continue
            checked += 1
            problem = check_link(source, page, target, files, directories, anchor_cache)
            if problem:
                problems.append(f"{page}:{line}: {problem}")
    for problem in problems:
        print(f"FAILED: {problem}", file=sys.stderr)
    if problems:
        print(f"{len(problems)} of {checked} relative links in {len(pages)} Markdown files "
              "are broken", file=sys.stderr)
        return 1
    print(f"all {checked} relative links in {len(pages)} Markdown files resolve")
    return 0


if __name__ == "__main__":
    sys.exit(main())
