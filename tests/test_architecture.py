"""The package's import graph: no cycles, Streamlit only in the app, the core below the app.

Read from the source with ast (nothing is imported), every import counted, also those inside
functions; only those under ``if TYPE_CHECKING:`` are left out (they never run).
"""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "livercore"
# Modules that draw with Streamlit: the app's state and its Streamlit pieces, nothing else.
STREAMLIT_MODULES = {"livercore.app.state", "livercore.app.ui"}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_lines(tree: ast.Module) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def imports_of(path: Path) -> set[str]:
    """Every module name `path` imports (absolute; relative imports resolved)."""
    tree = ast.parse(path.read_text())
    skip = _type_checking_lines(tree)
    here = module_name(path).split(".")
    out: set[str] = set()
    for node in ast.walk(tree):
        if getattr(node, "lineno", 0) in skip:
            continue
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join([*here[: len(here) - node.level + (path.name == "__init__.py")], base]).strip(
                    "."
                )
            out.add(base)
            out.update(f"{base}.{a.name}" for a in node.names)
    return out


def graph() -> dict[str, set[str]]:
    """livercore module -> the livercore modules it imports."""
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {
        name: {m for m in imports_of(path) if m in modules and m != name and not name.startswith(m + ".")}
        for name, path in modules.items()
    }


def test_the_package_has_no_import_cycle() -> None:
    deps = graph()
    sorter = graphlib.TopologicalSorter(deps)
    try:
        sorter.prepare()
    except graphlib.CycleError as err:
        raise AssertionError(f"import cycle: {' -> '.join(err.args[1])}") from None


def test_only_the_apps_state_and_ui_import_streamlit() -> None:
    users = {
        module_name(p)
        for p in PACKAGE.rglob("*.py")
        if any(m == "streamlit" or m.startswith("streamlit.") for m in imports_of(p))
    }
    assert users == STREAMLIT_MODULES


def test_the_core_does_not_import_the_app() -> None:
    """Everything outside livercore.app (and the command line) stands below the app."""
    deps = graph()
    above = [
        (name, m)
        for name, imported in deps.items()
        if not name.startswith("livercore.app") and name != "livercore.cli"
        for m in imported
        if m.startswith("livercore.app")
    ]
    assert not above, above


def test_the_graph_sees_module_level_function_level_and_relative_imports() -> None:
    """The reader itself, on imports known to be there (else the tests above pass vacuously)."""
    deps = graph()
    assert "livercore.model" in deps["livercore.analysis"]  # at module level
    assert "livercore.explain" in deps["livercore.analysis"]  # inside a function
    assert "livercore.analysis" not in deps["livercore.app.ui"]  # only under TYPE_CHECKING
    assert "livercore.teaching.catalogue" in deps["livercore.app.state"]
