"""No module under gateway/simulator/ imports `adapters`: the supplier side implements each protocol itself.

Were the simulators to sign or encode through the adapters, every simulator and end-to-end test
would check the adapters against themselves, and a signing bug shared by both would pass them all.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Final

import pytest

import gateway.simulator

FORBIDDEN: Final = "adapters"
PACKAGE: Final = Path(gateway.simulator.__file__).parent


def forbidden_imports(source: str) -> list[str]:
    """Every import of `FORBIDDEN` (or of a submodule) in `source`.

    Covers `import`, `from … import` and `importlib.import_module` / `__import__` called with a
    literal name, wherever they stand (a function body included). Relative imports are left out:
    from inside `gateway` they can only reach `gateway`'s own modules, never the top-level package.
    """
    found = []
    for node in ast.walk(ast.parse(source)):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module is not None:
            names = [node.module]
        elif isinstance(node, ast.Call) and _dynamic_import(node.func):
            names = [
                arg.value
                for arg in node.args[:1]
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str)
            ]
        found += [name for name in names if name == FORBIDDEN or name.startswith(FORBIDDEN + ".")]
    return found


def _dynamic_import(func: ast.expr) -> bool:
    if isinstance(func, ast.Name):
        return func.id in {"__import__", "import_module"}
    return isinstance(func, ast.Attribute) and func.attr == "import_module"


def simulator_modules() -> dict[str, Path]:
    """Every Python file of the package, subpackages included, by dotted module name."""
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent.parent).with_suffix("").parts
        modules[".".join(parts)] = path
    return modules


def test_the_walk_sees_every_front_and_every_signing_module() -> None:
    modules = simulator_modules()
    for name in ("engine", "front", "courier", "fulu", "juhe", "ofpay", "dayuanren"):
        assert f"gateway.simulator.{name}" in modules
    for name in ("fulu", "juhe", "ofpay", "dayuanren"):
        assert f"gateway.simulator.signatures.{name}" in modules


@pytest.mark.parametrize("module", sorted(simulator_modules()))
def test_no_simulator_module_imports_adapters(module: str) -> None:
    source = simulator_modules()[module].read_text(encoding="utf-8")
    assert forbidden_imports(source) == []


@pytest.mark.parametrize(
    "source",
    [
        "import adapters",
        "import adapters.fulu as signing",
        "import json, adapters.interface",
        "from adapters import fulu",
        "from adapters.interface import HttpReply",
        "def late():\n    from adapters.ofpay import sign",
        "import importlib\nimportlib.import_module('adapters.juhe')",
        "from importlib import import_module\nimport_module('adapters')",
        "__import__('adapters.dayuanren')",
    ],
)
def test_the_guard_catches_every_way_to_import_adapters(source: str) -> None:
    assert forbidden_imports(source) != []


@pytest.mark.parametrize(
    "source",
    [
        "import adaptersx",
        "from gateway.simulator import front",
        "from . import adapters",  # a sibling module inside gateway, not the top-level package
        "from ... import adapters",
        "from gateway import adapters_note",
        "x = 'adapters.fulu'",
    ],
)
def test_the_guard_lets_other_imports_pass(source: str) -> None:
    assert forbidden_imports(source) == []
