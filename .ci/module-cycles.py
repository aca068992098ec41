#!/usr/bin/env python3
"""Fails when two top-level modules of src/ import each other, directly or
through others. Reads `crate::X` paths (in `use` lines and inline paths) in
every file of each top-level module, skipping `#[cfg(test)]` modules, prints
the edges it found and every cycle (a strongly connected component of more
than one module)."""
import pathlib
import re
import sys

SRC = pathlib.Path(__file__).resolve().parent.parent / "src"


def top_module(path: pathlib.Path) -> str | None:
    rel = path.relative_to(SRC)
    if rel.parts[0] == "bin" or rel.name in ("lib.rs", "main.rs") and len(rel.parts) == 1:
        return None
    return rel.parts[0].removesuffix(".rs")


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


def uses(code: str) -> set[str]:
    found = set(re.findall(r"\bcrate::([a-z_][a-z0-9_]*)", code))
    # `use crate::{a, b::c}` groups.
    for group in re.findall(r"\bcrate::\{([^}]*)\}", code, flags=re.S):
        found |= set(re.findall(r"(?:^|,)\s*([a-z_][a-z0-9_]*)", group))
    return found


def main() -> int:
    modules = {top_module(p) for p in SRC.rglob("*.rs")} - {None}
    edges: dict[str, set[str]] = {m: set() for m in modules}
    for path in sorted(SRC.rglob("*.rs")):
        m = top_module(path)
        if m is None:
            continue
        for dep in uses(strip_test_modules(path.read_text())):
            if dep in modules and dep != m:
                edges[m].add(dep)

    print("edges (module -> modules it imports):")
    for m in sorted(edges):
        print(f"  {m:<12} -> {', '.join(sorted(edges[m])) or '-'}")

    # Tarjan's strongly connected components.
    index, low, stack, on, sccs, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges[v]):
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

    if not sccs:
        print("ok: no import cycle between the top-level modules of src/")
        return 0
    for comp in sccs:
        inside = [f"{a} -> {b}" for a in comp for b in sorted(edges[a]) if b in comp]
        print(f"CYCLE between {', '.join(comp)}: {'; '.join(inside)}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
