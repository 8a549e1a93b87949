"""The layering of docs/design.md: no package imports one in a layer above its own."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "cka_probe"
OUTSIDE = {"__init__", "__main__", "_moved"}  # the public API and the old paths re-export every layer


def design_layers() -> dict[str, int]:
    """Top-level name under ``cka_probe`` -> its layer, read from the table in ``docs/design.md``."""
    text = (ROOT / "docs" / "design.md").read_text(encoding="utf-8")
    table = text.split("<!-- layers:")[1].split("<!-- /layers -->")[0]
    layers = {}
    for row in table.splitlines():
        match = re.match(r"\|\s*(\d+)\s*\|([^|]*)\|", row)
        if match:
            for name in re.findall(r"`([\w.]+)`", match.group(2)):
                layers[name] = int(match.group(1))
    return layers


def module_name(path: Path, package: Path = PACKAGE) -> str:
    parts = path.relative_to(package.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path, root: Path = PACKAGE) -> list[tuple[int, str]]:
    """(line, absolute module name) of every ``cka_probe`` import in ``path``, function-level ones too."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module_name(path, root).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(package[: len(package) - node.level + 1]) if node.level else ""
            module = ".".join(part for part in (base, node.module or "") if part)
            found += [(node.lineno, f"{module}.{alias.name}") for alias in node.names]
    return [(line, name) for line, name in found if name.split(".")[0] == "cka_probe"]


def top(name: str) -> str:
    """The top-level name under ``cka_probe`` that ``name`` (cka_probe.x.y...) belongs to."""
    return name.split(".")[1] if "." in name else ""


def violations(layers: dict[str, int], package: Path = PACKAGE) -> list[str]:
    bad = []
    for path in sorted(package.rglob("*.py")):
        here = top(module_name(path, package))
        if here in OUTSIDE or module_name(path, package) == "cka_probe":
            continue
        for line, name in imported(path, package):
            there = top(name)
            if there not in layers:
                continue  # ``from cka_probe import x``: checked through x itself below
            if layers[there] > layers[here]:
                bad.append(
                    f"{path.relative_to(package.parent)}:{line} ({here}, layer {layers[here]}) "
                    f"imports {name} "
                    f"(layer {layers[there]})"
                )
            if here == "figures" and there == "study" and not name.startswith("cka_probe.study.schema"):
                bad.append(
                    f"{path.relative_to(package.parent)}:{line}: figures imports {name}, not the table schema"
                )
    return bad


def test_the_design_table_names_every_package_and_module():
    layers = design_layers()
    present = {
        p.stem if p.is_file() else p.name
        for p in PACKAGE.iterdir()
        if (p.suffix == ".py" or (p / "__init__.py").exists())
    }
    assert present - OUTSIDE == set(layers), "docs/design.md's layer table and cka_probe/ disagree"


def test_no_package_imports_a_higher_layer():
    assert violations(design_layers()) == []


def test_the_check_catches_upward_imports(tmp_path):
    """A copy of the package with a text module importing the study, and a figure importing the
    computation, is reported twice (the check is not vacuous)."""
    layers = design_layers()
    copy = tmp_path / "cka_probe"
    for name in ("text", "figures"):
        (copy / name).mkdir(parents=True)
    (copy / "text" / "probe.py").write_text("def f():\n    from cka_probe.study.roles import ROLES\n")
    (copy / "figures" / "probe.py").write_text(
        "from ..study import cross_task\nfrom ..study.schema import VALUE\n"
    )
    found = violations(layers, copy)
    assert found == [
        "cka_probe/figures/probe.py:1: figures imports cka_probe.study.cross_task, not the table schema",
        "cka_probe/text/probe.py:2 (text, layer 1) imports cka_probe.study.roles.ROLES (layer 10)",
    ]
