"""The package's shape, checked from its source: no import cycle between llmft's modules (imports inside functions
count: a lazy import is still a dependency), no module over 600 lines, no exported notebook cell over 40 lines."""
import ast, json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT/"llmft"

def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)

def modules() -> dict:
    "Module name -> source file, for every module of the package (the generated `_modidx` left out)."
    return {module_name(p): p for p in PKG.rglob("*.py") if p.name != "_modidx.py" and "__pycache__" not in p.parts}

def imported(path: Path, name: str, known: set) -> set:
    "The llmft modules `path` (module `name`) imports anywhere in its body, relative imports resolved."
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import): targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([base] if base else []))
            # `from pkg import sub` imports the submodule when there is one
            targets = [base] + [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in known]
        else: continue
        for t in targets:
            while t and t not in known: t = t.rpartition(".")[0]
            if t and t != name: out.add(t)
    return out

def import_graph() -> dict:
    mods = modules()
    return {name: imported(path, name, set(mods)) for name, path in mods.items()}

def cycles(graph: dict) -> list:
    "Strongly connected components with more than one module (Tarjan)."
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]
    def visit(v):
        index[v] = low[v] = counter[0]; counter[0] += 1; stack.append(v); on.add(v)
        for w in graph.get(v, ()):
            if w not in index: visit(w); low[v] = min(low[v], low[w])
            elif w in on: low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop(); on.discard(w); comp.append(w)
                if w == v: break
            if len(comp) > 1: out.append(sorted(comp))
    for v in graph:
        if v not in index: visit(v)
    return out

def test_import_graph_sees_lazy_imports():
    "The checker itself: a lazy import inside a function is an edge, and a two-module cycle is found."
    g = import_graph()
    assert "llmft.base" in g["llmft.cli"]                     # cli imports base only inside its commands
    assert cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]

def test_no_import_cycles():
    found = cycles(import_graph())
    assert not found, f"import cycles between llmft modules: {found}"

def test_modules_at_most_600_lines():
    long = {name: n for name, p in modules().items() if (n := len(p.read_text().splitlines())) > 600}
    assert not long, f"modules over 600 lines: {long}"

def test_exported_cells_at_most_40_lines():
    long = []
    for nb in sorted((ROOT/"nbs").glob("*.ipynb")):
        for cell in json.loads(nb.read_text())["cells"]:
            src = "".join(cell["source"])
            if cell["cell_type"] == "code" and src.startswith("#| export") and (n := len(src.splitlines())) > 40:
                long.append(f"{nb.name} cell {cell.get('id')}: {n} lines")
    assert not long, "exported cells over 40 lines:\n" + "\n".join(long)
