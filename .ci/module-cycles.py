#!/usr/bin/env python3
"""Fails when two modules of src/ with the same parent (two top-level
modules, or two submodules of one module) import each other, directly or
through others. Reads `crate::`, `super::` and `self::` paths (in `use` lines,
their groups, and inline paths), and a sibling's bare `x::` in a file that has
`use super::*`, skipping `#[cfg(test)]` modules; prints the edges it found at
each level and every cycle (a strongly connected component of more than one
module). A module naming its own parent or child is not an edge."""
import pathlib
import re
import sys

SRC = pathlib.Path(__file__).resolve().parent.parent / "src"


def strip_test_modules(text: str) -> str:
    """Removes every `#[cfg(test)]` item (a `mod ... { ... }` block or a
    single item) by brace matching; comments and strings are blanked first
    so that their braces do not count."""
    # Blank out comments and string literals, keeping offsets.
    def blank(m):
        return re.sub(r"[^\n]", " ", m.group(0))

    code = re.sub(r'//[^\n]*|/\*.*?\*/|r#*"(?:.|\n)*?"#*|"(?:\\.|[^"\\])*"', blank, text, flags=re.S)
    out = list(code)
    for m in re.finditer(r"#\[cfg\(test\)\]", code):
        i = m.end()
        # The item runs to its first `{ ... }` block or `;`, whichever comes first.
        while i < len(code) and code[i] not in "{;":
            i += 1
        if i < len(code) and code[i] == "{":
            depth = 0
            while i < len(code):
                if code[i] == "{":
                    depth += 1
                elif code[i] == "}":
                    depth -= 1
                    if depth == 0:
                        break
                i += 1
        for j in range(m.start(), min(i + 1, len(code))):
            if out[j] != "\n":
                out[j] = " "
    return "".join(out)


def module_of(path: pathlib.Path) -> tuple[str, ...] | None:
    """`src/a/b.rs` -> ("a", "b"); `src/a/mod.rs` -> ("a",); None for the
    crate root and the binaries."""
    rel = path.relative_to(SRC)
    if rel.parts[0] == "bin" or rel.parts == ("lib.rs",) or rel.parts == ("main.rs",):
        return None
    parts = list(rel.parts)
    if parts[-1] == "mod.rs":
        parts.pop()
    else:
        parts[-1] = parts[-1].removesuffix(".rs")
    return tuple(parts)


def segments(tail: str) -> list[str]:
    return re.findall(r"[a-z_][a-z0-9_]*", tail.split("{")[0])


def references(code: str, here: tuple[str, ...], modules: set) -> set[tuple[str, ...]]:
    """The modules that the code of module `here` names: `crate::a::b`,
    `super::x`, `self::x`, `use` groups of them, and the bare `x::` of a
    sibling made visible by `use super::*`. Each resolved to the longest known
    module path."""
    out = set()

    def resolve(base: tuple[str, ...], segs: list[str]):
        path = base
        for s in segs:
            if path + (s,) in modules:
                path = path + (s,)
            else:
                break
        if path:
            out.add(path)

    def walk(base: tuple[str, ...], rest: str):
        """`rest` follows `base::`: a path, or a `{...}` group of paths."""
        rest = rest.lstrip()
        if rest.startswith("{"):
            depth, i = 0, 0
            for i, c in enumerate(rest):
                depth += c == "{"
                depth -= c == "}"
                if depth == 0:
                    break
            inner, item, d = rest[1:i], "", 0
            for c in inner + ",":
                if c == "," and d == 0:
                    if item.strip():
                        sub = segments(item)
                        if sub and "::" in item and "{" in item:
                            walk(resolve_base(base, item.split("{")[0]), "{" + item.split("{", 1)[1])
                        elif sub:
                            resolve(base, sub)
                    item = ""
                    continue
                d += (c == "{") - (c == "}")
                item += c
            return
        resolve(base, segments(re.match(r"[a-z0-9_:]*", rest).group(0).replace("::", " ")))

    def resolve_base(base, prefix):
        path = base
        for s in segments(prefix.replace("::", " ")):
            if path + (s,) in modules:
                path = path + (s,)
        return path

    for m in re.finditer(r"\bcrate::", code):
        walk((), code[m.end():m.end() + 400])
    for m in re.finditer(r"(?<![a-z0-9_:])((?:super::)+)", code):
        up = m.group(1).count("super")
        base = here[: len(here) - up] if up <= len(here) else ()
        walk(base, code[m.end():m.end() + 400])
    for m in re.finditer(r"(?<![a-z0-9_:])self::", code):
        walk(here, code[m.end():m.end() + 400])
    if re.search(r"\buse\s+super::\*\s*;", code):
        parent = here[:-1]
        for m in re.finditer(r"(?<![a-z0-9_:.])([a-z_][a-z0-9_]*)::", code):
            if parent + (m.group(1),) in modules and m.group(1) != here[-1]:
                out.add(parent + (m.group(1),))
    return out


def main() -> int:
    files = {p: module_of(p) for p in sorted(SRC.rglob("*.rs"))}
    modules = {m for m in files.values() if m}
    # Every module's parents are modules too.
    modules |= {m[:i] for m in modules for i in range(1, len(m))}
    # Edges between siblings: a file of `a::x` naming `a::y::z` is an edge
    # x -> y under `a`; a child naming its parent (or the parent a child) is not.
    edges: dict[tuple[str, ...], dict[str, set[str]]] = {}
    for path, here in files.items():
        if here is None:
            continue
        for dep in references(strip_test_modules(path.read_text()), here, modules):
            k = 0
            while k < min(len(here), len(dep)) and here[k] == dep[k]:
                k += 1
            if k == len(here) or k == len(dep):
                continue  # one contains the other
            edges.setdefault(here[:k], {}).setdefault(here[k], set()).add(dep[k])
    for m in modules:
        parent = edges.setdefault(m[:-1], {})
        parent.setdefault(m[-1], set())

    found = []
    for parent in sorted(edges):
        name = "::".join(parent) or "src"
        g = edges[parent]
        if parent and not any(g.values()):
            continue
        print(f"edges under {name} (module -> modules it imports):")
        for m in sorted(g):
            print(f"  {m:<14} -> {', '.join(sorted(g[m])) or '-'}")
        for comp in cycles(g):
            inside = [f"{a} -> {b}" for a in comp for b in sorted(g[a]) if b in comp]
            found.append(f"CYCLE under {name} between {', '.join(comp)}: {'; '.join(inside)}")
    if not found:
        print("ok: no import cycle between the modules of src/ at any level")
        return 0
    for line in found:
        print(line)
    return 1


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components of more than one module."""
    index, low, stack, on, sccs, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                sccs.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return sccs


if __name__ == "__main__":
    sys.exit(main())
