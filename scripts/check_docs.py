#!/usr/bin/env python3
"""Keeps the documentation true to the tree (standard library only).

  check_docs.py --links              every relative link and #anchor in the tracked
                                     *.md files resolves; exit 1 and one line per
                                     broken link otherwise
  check_docs.py --extract <dir>      writes the ```cpp blocks of README.md and docs/*.md
                                     that are whole programs (they define `int main(`)
                                     into <dir> as <doc>_<n>.cpp (n: the block's number
                                     among the doc's cpp blocks), and <dir>/doc_programs.cmake:
                                     one `cacheaside_doc_program(<name> <file> <C++
                                     standard> <targets>...)` line per program

Anchors are GitHub's heading slugs (lower case, punctuation but '-' and '_' dropped,
each space a '-', repeated headings suffixed -1, -2, ...) or an explicit
<a id="..."> / <a name="...">. A cpp block without `int main(` is a fragment and is not
extracted; a program can be left out with `<!-- check_docs: fragment -->` on the line
before its fence.
"""
import os
import re
import subprocess
import sys
import unicodedata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})\s*([\w+-]*)")
HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+\"[^\"]*\")?\s*$")
HTML_LINK = re.compile(r"<(?:a|img)\b[^>]*?\b(?:href|src)\s*=\s*[\"']([^\"']*)[\"']", re.I)
HTML_ANCHOR = re.compile(r"<a\b[^>]*?\b(?:id|name)\s*=\s*[\"']([^\"']+)[\"']", re.I)
INLINE_CODE = re.compile(r"(`+)(.+?)\1")
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:|^//")
SKIP_MARK = "<!-- check_docs: fragment -->"

# Header -> the CMake target (cacheaside::<name>) a program including it links.
TARGETS = [
    ("cacheaside/libmemcached.hpp", "memcached"),
    ("cacheaside/meta.hpp", "meta"),
    ("cacheaside/json.hpp", "json"),
    ("cacheaside/async", "async"),
    ("cacheaside/tls.hpp", "tls"),
]
CXX20 = re.compile(r"\bco_(await|return|yield)\b")


# ---- reading Markdown ---------------------------------------------------------------

def markdown_files():
    """The tracked (and new, not ignored) *.md files, relative to ROOT."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard", "--", "*.md"],
            cwd=ROOT, capture_output=True, text=True, check=True).stdout
        return sorted({Path(p) for p in out.splitlines() if (ROOT / p).is_file()})
    except (OSError, subprocess.CalledProcessError):
        found = []
        for top, dirs, files in os.walk(ROOT):
            dirs[:] = [d for d in dirs if not d.startswith((".", "build"))]
            found += [Path(top, f).relative_to(ROOT) for f in files if f.endswith(".md")]
        return sorted(found)


def split_blocks(text):
    """The doc as (kind, first line number, lines): kind 'text', or the fenced block's
    language ('' when none). Fence lines themselves are left out."""
    parts, lines, kind, start, fence, indent = [], [], "text", 1, None, 0
    for number, line in enumerate(text.splitlines(), 1):
        m = FENCE.match(line)
        if fence is None and m:
            parts.append((kind, start, lines))
            fence, indent = m.group(2), len(m.group(1))
            kind, start, lines = m.group(3).lower(), number + 1, []
        elif fence is not None and line.strip().startswith(fence[0] * len(fence)) \
                and not line.strip().strip(fence[0]):
            parts.append((kind, start, lines))
            fence, kind, start, lines = None, "text", number + 1, []
        else:
            lines.append(line[indent:] if fence and line[:indent].isspace() else line)
    parts.append((kind, start, lines))
    return parts


def prose_lines(text):
    """(line number, line) outside fenced blocks, inline code spans blanked."""
    for kind, start, lines in split_blocks(text):
        if kind != "text":
            continue
        for offset, line in enumerate(lines):
            yield start + offset, INLINE_CODE.sub(lambda m: " " * len(m.group(0)), line)


# ---- anchors ------------------------------------------------------------------------

def heading_text(raw):
    """What GitHub renders of a heading's Markdown: the text a slug is made from."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", raw)  # links and images: their text
    text = re.sub(r"<[^>]+>", "", text)  # HTML tags
    text = text.replace("`", "")
    text = re.sub(r"(\*{1,3})(.+?)\1", r"\2", text)
    text = re.sub(r"(?<![\w])(_{1,3})(.+?)\1(?![\w])", r"\2", text)
    return text.strip()


def slug(text):
    """GitHub's slug of a heading's text (github-slugger, without the duplicate count)."""
    kept = []
    for ch in heading_text(text).lower():
        if ch in "-_ " or unicodedata.category(ch)[0] in "LNM":
            kept.append("-" if ch == " " else ch)
    return "".join(kept)


def anchors(path, cache={}):
    """Every anchor a link into the Markdown file path may name."""
    if path not in cache:
        seen, found = {}, set()
        text = path.read_text(encoding="utf-8")
        for kind, _, lines in split_blocks(text):
            if kind != "text":
                continue
            for line in lines:
                found.update(HTML_ANCHOR.findall(line))
                m = HEADING.match(line)
                if not m:
                    continue
                base = slug(m.group(2))
                n = seen.get(base, 0)
                seen[base] = n + 1
                found.add(base if n == 0 else f"{base}-{n}")
        cache[path] = found
    return cache[path]


# ---- links --------------------------------------------------------------------------

def links(text):
    """(line number, target) of every link in the prose of a Markdown text."""
    for number, line in prose_lines(text):
        for pattern in (LINK, REFERENCE, HTML_LINK):
            for target in pattern.findall(line):
                yield number, target


def broken(doc, target):
    """Why target, linked from doc (relative to ROOT), does not resolve, or None."""
    if not target or SCHEME.match(target):
        return None
    path, _, anchor = target.partition("#")
    file = (ROOT / doc).parent / path if path else ROOT / doc
    file = Path(os.path.normpath(file))
    if ROOT not in file.parents and file != ROOT:
        return "points outside the repository"
    if not file.exists():
        return "no such file"
    if not anchor or file.suffix != ".md":
        return None  # anchors into other files (e.g. #L10 of a source) are not checked
    if anchor not in anchors(file):
        return f"no heading or <a id> '{anchor}' in {file.relative_to(ROOT)}"
    return None


def check_links():
    failures = 0
    docs = markdown_files()
    for doc in docs:
        for number, target in links((ROOT / doc).read_text(encoding="utf-8")):
            why = broken(doc, target)
            if why:
                print(f"{doc}:{number}: ({target}) {why}")
                failures += 1
    print(f"check_docs: {len(docs)} Markdown files, {failures} broken links", file=sys.stderr)
    return 1 if failures else 0


# ---- programs -----------------------------------------------------------------------

def programs(doc):
    """(name, source) of each whole C++ program in doc (relative to ROOT)."""
    text = (ROOT / doc).read_text(encoding="utf-8")
    stem = "_".join(doc.with_suffix("").parts)
    number, previous = 0, []
    for kind, _, lines in split_blocks(text):
        if kind in ("cpp", "c++", "cxx"):
            number += 1
            source = "\n".join(lines) + "\n"
            skipped = previous and previous[-1].strip() == SKIP_MARK
            if re.search(r"\bint\s+main\s*\(", source) and not skipped:
                yield f"{stem}_{number}", source
        previous = [line for line in lines if line.strip()] if kind == "text" else []


def needs(source):
    """The C++ standard and the cacheaside targets a program's includes call for."""
    targets = ["cacheaside"]
    for header, target in TARGETS:
        if re.search(r"#\s*include\s*[<\"]" + re.escape(header), source):
            targets.append(target)
    return ("20" if CXX20.search(source) else "17"), targets


def extract(out):
    out.mkdir(parents=True, exist_ok=True)
    docs = [Path("README.md")] + sorted(p.relative_to(ROOT) for p in (ROOT / "docs").glob("*.md"))
    lines = []
    for doc in docs:
        for name, source in programs(doc):
            file = out / f"{name}.cpp"
            if not file.exists() or file.read_text(encoding="utf-8") != source:
                file.write_text(source, encoding="utf-8")  # unchanged: no rebuild
            std, targets = needs(source)
            cmake_targets = " ".join(f"cacheaside::{t}" for t in targets)
            lines.append(f"cacheaside_doc_program({name} \"{file}\" {std} {cmake_targets})\n")
            print(f"{doc} -> {file.name}: C++{std}, {cmake_targets}")
    manifest = out / "doc_programs.cmake"
    text = "# Written by scripts/check_docs.py --extract.\n" + "".join(lines)
    if not manifest.exists() or manifest.read_text(encoding="utf-8") != text:
        manifest.write_text(text, encoding="utf-8")
    return 0


def main(argv):
    if argv[1:] == ["--links"]:
        return check_links()
    if len(argv) == 3 and argv[1] == "--extract":
        return extract(Path(argv[2]).resolve())
    sys.exit(__doc__)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
