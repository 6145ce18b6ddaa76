"""The folders of afd are its layers, and imports only point down them: every module's imports,
those inside functions included, are read from the source and checked for upward imports and
cycles. `reporting` reads results files and imports no training code."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "afd"
# Lower layers first; a module may import its own layer and the layers below it.
LAYERS = {
    "core": 0,
    "objectives": 1,
    "reporting": 1,
    "models": 2,
    "tasks": 3,
    "runtime": 4,
    "recipes": 5,
    "pipeline": 6,
    "cli": 7,
}
ONLY = {"reporting": {"core", "reporting"}, "objectives": {"core", "objectives"}}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return "core"  # the package's __init__: its version only
    if len(parts) == 2 and parts[1] not in LAYERS:
        return "cli"  # `python -m afd.train` and friends: entry points at the top
    return parts[1]


def imports_of(path: Path) -> list[tuple[str, int]]:
    """(module, line) of every afd import in the file, at any depth."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names if a.name.startswith("afd")]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("afd"):
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                is_module = (ROOT / sub.replace(".", "/")).with_suffix(".py").exists() or (
                    ROOT / sub.replace(".", "/")
                ).is_dir()
                found.append((sub if is_module else node.module, node.lineno))
    return found


def graph() -> dict[str, list[tuple[str, int]]]:
    return {module_name(p): imports_of(p) for p in sorted(PACKAGE.rglob("*.py"))}


def test_every_module_sits_in_a_layer():
    unknown = {m for m in graph() if layer(m) not in LAYERS}
    assert not unknown, f"modules outside the layers {sorted(LAYERS)}: {sorted(unknown)}"


def test_imports_point_down():
    upward = []
    for module, imports in graph().items():
        mine = layer(module)
        for target, line in imports:
            theirs = layer(target)
            allowed = ONLY.get(mine)
            if LAYERS[theirs] > LAYERS[mine] or (allowed and theirs not in allowed):
                upward.append(f"{module}:{line} imports {target} ({mine} -> {theirs})")
    assert not upward, "imports that point up the layers:\n" + "\n".join(upward)


def test_no_import_cycles():
    edges = {m: {t for t, _ in imps if t != m} for m, imps in graph().items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for t in sorted(edges.get(m, ())):
            if state.get(t) == 1:
                cycle = stack[stack.index(t) :] + [t]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if t in edges and t not in state:
                visit(t)
        stack.pop()
        state[m] = 2

    for m in sorted(edges):
        if m not in state:
            visit(m)


def test_modules_stay_small():
    long = {
        str(p.relative_to(ROOT)): n
        for p in PACKAGE.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > 320
    }
    assert not long, f"modules over ~300 lines: {long}"
