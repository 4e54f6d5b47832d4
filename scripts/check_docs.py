#!/usr/bin/env python3
"""Dead relative links in README.md and docs/*.md.

Every link `[text](path)`, `[text](path#anchor)`, `[text](#anchor)` (and reference
definitions `[ref]: path`) that is not an absolute URL must name a file or directory that
exists, relative to the Markdown file; an anchor into a Markdown file must match one of its
headings, slugged as GitHub does (lowercase; punctuation other than `-` and `_` dropped; each
space a `-`; the second heading with the same slug gets `-1`, the third `-2`, ...). Anchors
into other files (`src/x.rs#L10`) are not checked; http(s) and other URLs are not fetched.

Usage: python3 scripts/check_docs.py [FILE.md ...]  (default: README.md docs/*.md)
Exit 1 with one line per dead link (`file:line: link`), else 0 with a one-line summary.
Standard library only.
"""

import os
import re
import sys
from urllib.parse import unquote

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
CODE_SPAN = re.compile(r"(`+)(.+?)\1")
# [text](target "title") or ![alt](target); the target may hold one level of parentheses.
INLINE_LINK = re.compile(
    r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*(<[^>]*>|[^()\s]*(?:\([^()\s]*\)[^()\s]*)*)"
    r"(?:\s+(?:\"[^\"]*\"|'[^']*'|\([^)]*\)))?\s*\)"
)
REF_DEFINITION = re.compile(r"^ {0,3}\[[^\]]+\]:\s*(<[^>]*>|\S+)")
HTML_ID = re.compile(r"""<a\s[^>]*\b(?:name|id)\s*=\s*["']([^"']+)["']""", re.I)
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def text_lines(path):
    """(line number, line) outside fenced code blocks."""
    fence = None
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            line = line.rstrip("\n")
            opened = FENCE.match(line)
            if fence:
                if opened and opened.group(1)[0] == fence[0] and len(opened.group(1)) >= len(fence):
                    fence = None
                continue
            if opened:
                fence = opened.group(1)
                continue
            yield number, line


def heading_text(raw):
    """The text GitHub renders for a heading's source: code spans, links and emphasis unwrapped."""
    text = CODE_SPAN.sub(lambda m: m.group(2).strip(), raw)
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = re.sub(r"<[^>]+>", "", text)
    text = re.sub(r"(\*+)(.+?)\1", r"\2", text)
    return text.strip()


def slug(text):
    """GitHub's anchor for a heading's rendered text (before de-duplication)."""
    text = text.lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path, cache={}):
    """Every anchor a Markdown file offers: its headings' slugs and explicit HTML ids."""
    if path in cache:
        return cache[path]
    seen = {}
    found = set()

    def add(text):
        base = slug(heading_text(text))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")

    previous = ""
    for _, line in text_lines(path):
        atx = ATX.match(line)
        if atx:
            add(atx.group(2) or "")
            previous = ""
            continue
        setext = SETEXT.match(line)
        if (
            setext
            and previous.strip()
            and not previous.lstrip().startswith(("|", "-", "*", "+", ">"))
            and not ATX.match(previous)
        ):
            add(previous)
            previous = ""
            continue
        found.update(HTML_ID.findall(line))
        previous = line
    cache[path] = found
    return found


def links(path):
    """(line number, target) of every link in a Markdown file, code excluded."""
    for number, line in text_lines(path):
        visible = CODE_SPAN.sub(lambda m: " " * len(m.group(0)), line)
        for match in INLINE_LINK.finditer(visible):
            yield number, match.group(1)
        definition = REF_DEFINITION.match(visible)
        if definition:
            yield number, definition.group(1)


def dead(source, target):
    """Why `target`, linked from `source`, does not resolve; None when it does."""
    target = target.strip()
    if target.startswith("<") and target.endswith(">"):
        target = target[1:-1]
    if not target or SCHEME.match(target) or target.startswith("//"):
        return None
    path_part, _, anchor = target.partition("#")
    if path_part:
        resolved = os.path.normpath(os.path.join(os.path.dirname(source), unquote(path_part)))
        if not os.path.exists(resolved):
            return "no such file"
    else:
        resolved = source
    if anchor and resolved.endswith(".md") and os.path.isfile(resolved):
        if unquote(anchor).lower() not in anchors(resolved):
            return "no such heading"
    return None


def main(argv):
    os.chdir(ROOT)
    files = argv or ["README.md"]
    if not argv and os.path.isdir("docs"):
        names = sorted(n for n in os.listdir("docs") if n.endswith(".md"))
        files += [os.path.join("docs", n) for n in names]
    problems = []
    checked = 0
    for path in files:
        for number, target in links(path):
            checked += 1
            reason = dead(path, target)
            if reason:
                problems.append(f"{path}:{number}: {target} ({reason})")
    for problem in problems:
        print(problem)
    if problems:
        return 1
    print(f"check_docs: {checked} links in {len(files)} files, no dead relative link")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
