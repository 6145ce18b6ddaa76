"""Every third-party module afd imports is declared in pyproject.toml.

A developer's environment often holds more than a clean install: a module imported by afd but
missing from the dependencies only fails on a fresh machine. This test finds such imports from
the source, without needing a clean install."""

import ast
import importlib.metadata as md
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = [ROOT / "afd", ROOT / "hydra_plugins"]


def _imported_top_level_modules() -> dict[str, str]:
    """Top-level module name -> the first file:line that imports it."""
    found: dict[str, str] = {}
    for package in PACKAGES:
        for path in sorted(package.rglob("*.py")):
            tree = ast.parse(path.read_text(), filename=str(path))
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    found.setdefault(name.split(".")[0], f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


def _requirement_name(requirement: str) -> str:
    return re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _declared_with_dependencies() -> set[str]:
    """The distributions afd declares (without extras), and everything they require in turn."""
    declared = {_requirement_name(r) for r in md.requires("afd") or [] if "extra ==" not in r}
    seen, todo = set(), list(declared)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requirements = md.requires(name) or []
        except md.PackageNotFoundError:
            continue
        todo += [_requirement_name(r) for r in requirements if "extra ==" not in r]
    return seen


# Modules of optional extras: declared there, and imported only inside functions, so that a
# base install never needs them.
OPTIONAL = {"vllm": "vllm"}  # module -> the extra that installs it


def _imported_at_module_level() -> set[str]:
    top = set()
    for package in PACKAGES:
        for path in sorted(package.rglob("*.py")):
            for node in ast.parse(path.read_text()).body:
                if isinstance(node, ast.Import):
                    top |= {a.name.split(".")[0] for a in node.names}
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    top.add(node.module.split(".")[0])
    return top


def test_optional_engines_are_extras_imported_where_used():
    extras = md.metadata("afd").get_all("Provides-Extra") or []
    requires = md.requires("afd") or []
    for module, extra in OPTIONAL.items():
        assert extra in extras, f"pyproject.toml has no extra {extra!r} for {module}"
        assert any(f'extra == "{extra}"' in r and _requirement_name(r) == module for r in requires)
        assert module not in _imported_at_module_level(), f"{module} imported at module level"


def test_every_imported_third_party_module_is_a_declared_dependency():
    try:
        md.requires("afd")
    except md.PackageNotFoundError:
        pytest.fail("afd is not installed: run `pip install -e .[dev]`")
    provided_by = md.packages_distributions()
    ours = {"afd", "hydra_plugins", "tests"}
    allowed = _declared_with_dependencies()
    missing = []
    for module, where in sorted(_imported_top_level_modules().items()):
        if (
            module in ours
            or module in sys.stdlib_module_names
            or module in ("__future__", *OPTIONAL)
        ):
            continue
        distributions = {d.lower().replace("_", "-") for d in provided_by.get(module, [])}
        if not distributions & allowed:
            missing.append(f"{module} (imported at {where}; provided by {sorted(distributions)})")
    assert not missing, (
        "imported but not declared in pyproject.toml dependencies (or declared since the last "
        "`pip install -e .`, whose metadata this reads): " + ", ".join(missing)
    )
