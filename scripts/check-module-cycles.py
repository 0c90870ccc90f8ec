#!/usr/bin/env python3
"""Fails when modules of a crate import each other in a circle.

Usage: scripts/check-module-cycles.py CRATE_SRC_DIR...

Two levels are checked: every module, and the top-level modules (a folder or a file directly
under the crate's source directory is one module, with everything inside it), so that no two
parts of a crate lean on each other through their children either.

Each source file is a module (`foo.rs` and `foo/mod.rs` are `foo`, `foo/bar.rs` is
`foo::bar`). A module depends on another when it names it, or something in it, by a `crate::`,
`super::` or `self::` path, in a `use` or inline. A parent that only declares or re-exports its
children (`mod x; pub use x::Y;`) does not depend on them, so `data` may re-export what
`data::blobs` defines while `data::blobs` uses `data::endpoint`. Unit tests (`mod tests`) are
left out. Prints every circle found; exits 1 if there is one.
"""

import re
import sys
from pathlib import Path

IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
PATH = re.compile(rf"\b(crate|super|self)((?:::{IDENT})+)")
GROUP = re.compile(rf"\b(crate|super|self)((?:::{IDENT})*)::\{{([^{{}}]*)\}}")


def module_of(src: Path, path: Path) -> tuple[str, ...]:
    parts = list(path.relative_to(src).with_suffix("").parts)
    if parts[-1] in ("mod", "lib", "main"):
        parts.pop()
    return tuple(parts)


def code_of(path: Path) -> str:
    text = re.sub(r"//[^\n]*", "", path.read_text())
    cut = re.search(r"#\[cfg\(test\)\]\s*mod tests", text)
    text = text[: cut.start()] if cut else text
    # Re-exports of a module's own children are its interface, not a dependency.
    return re.sub(r"pub(\([a-z]+\))? use self::[^;]*;", "", text)


def resolve(base: tuple[str, ...], names: list[str], modules: set) -> tuple[str, ...] | None:
    """The deepest known module along `base` + `names`."""
    path = base
    for name in names:
        if path + (name,) in modules:
            path = path + (name,)
        else:
            break
    return path


def graph_of(src: Path) -> dict:
    files = sorted(src.rglob("*.rs"))
    modules = {module_of(src, f) for f in files}
    graph: dict = {}
    for path in files:
        module = module_of(src, path)
        roots = {"crate": (), "self": module, "super": module[:-1]}
        text = code_of(path)
        targets = set()
        paths = [(root, rest.split("::")[1:]) for root, rest in PATH.findall(text)]
        for root, prefix, items in GROUP.findall(text):
            for item in items.split(","):
                first = item.strip().split("::")[0].split(" ")[0]
                if first:
                    paths.append((root, prefix.split("::")[1:] + [first]))
        for root, names in paths:
            target = resolve(roots[root], names, modules)
            if target and target != module:
                targets.add(target)
        graph[module] = targets
    return graph


def cycles(graph: dict) -> list[list[tuple]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def name(module: tuple) -> str:
    return "::".join(module) or "crate"


def top_level(graph: dict) -> dict:
    """The graph between top-level modules: each module stands for its first path part."""
    top: dict = {}
    for module, targets in graph.items():
        if not module:
            continue
        edges = top.setdefault(module[:1], set())
        edges.update(t[:1] for t in targets if t and t[:1] != module[:1])
    return top


def main() -> int:
    failed = False
    for src in map(Path, sys.argv[1:]):
        graph = graph_of(src)
        for level, levelled in (("modules", graph), ("top-level modules", top_level(graph))):
            for component in cycles(levelled):
                failed = True
                print(f"{src}: {level} import each other: {', '.join(map(name, component))}")
                for module in component:
                    into = sorted(name(d) for d in levelled[module] if d in component)
                    print(f"  {name(module)} uses {', '.join(into)}")
    if not failed:
        print(f"no circular imports in {' '.join(sys.argv[1:])}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
