#!/usr/bin/env python3
"""Fails when a source file or a function is too long to read in one sitting.

Usage: scripts/check-structure.py SRC_DIR...

- a file over 500 lines (unit-test modules count; `tests.rs` files and `tests/` folders are
  tests, and are left out);
- a function over 80 lines, from its `fn` line to its closing brace (functions inside
  `#[cfg(test)] mod ... { }` are left out).

Prints every finding; exits 1 if there is one. The module circles are checked by
`scripts/check-module-cycles.py`.
"""

import re
import sys
from pathlib import Path

MAX_FILE_LINES = 500
MAX_FN_LINES = 80

FN = re.compile(r"\s*(pub(\([^)]*\))?\s+)?(const\s+)?(async\s+)?(unsafe\s+)?fn\s+(\w+)")
TEST_MODULE = re.compile(r"#\[cfg\(test\)\]\s*(pub(\([^)]*\))?\s+)?mod\s+\w+\s*\{")
STRING_OR_COMMENT = re.compile(r'"(\\.|[^"\\])*"|//.*|\'.\'')


def source_files(src: Path):
    for path in sorted(src.rglob("*.rs")):
        relative = path.relative_to(src)
        if path.name == "tests.rs" or "tests" in relative.parts[:-1]:
            continue
        yield path


def without_test_modules(text: str) -> str:
    """The text with each `#[cfg(test)] mod x { ... }` blanked out, line count kept."""
    out, position = [], 0
    for found in TEST_MODULE.finditer(text):
        if found.start() < position:
            continue
        out.append(text[position : found.start()])
        depth, end = 1, found.end()
        while end < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[end], 0)
            end += 1
        out.append("\n" * text[found.start() : end].count("\n"))
        position = end
    out.append(text[position:])
    return "".join(out)


def long_functions(path: Path, text: str):
    lines = [STRING_OR_COMMENT.sub("", line) for line in text.split("\n")]
    for start, line in enumerate(lines):
        found = FN.match(line)
        if not found:
            continue
        depth, opened = 0, False
        for end in range(start, len(lines)):
            if not opened and ";" in lines[end] and "{" not in lines[end]:
                break
            depth += lines[end].count("{") - lines[end].count("}")
            opened = opened or "{" in lines[end]
            if opened and depth <= 0:
                length = end - start + 1
                if length > MAX_FN_LINES:
                    yield f"{path}:{start + 1}: fn {found.group(6)} has {length} lines (at most {MAX_FN_LINES})"
                break


def main() -> int:
    findings = []
    for src in map(Path, sys.argv[1:]):
        for path in source_files(src):
            text = path.read_text()
            lines = text.count("\n")
            if lines > MAX_FILE_LINES:
                findings.append(f"{path}: {lines} lines (at most {MAX_FILE_LINES})")
            findings.extend(long_functions(path, without_test_modules(text)))
    for finding in findings:
        print(finding)
    if not findings:
        print(f"no file over {MAX_FILE_LINES} lines and no function over {MAX_FN_LINES} in {' '.join(sys.argv[1:])}")
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
