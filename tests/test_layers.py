"""The import rules of docs/architecture.md, read from its layer table and checked on every import.

Every ``import`` and ``from ... import`` in ``trioweb/`` and ``rpc/`` counts,
those under ``if TYPE_CHECKING:`` and inside functions included. Each rule
is also tried on a made-up import that breaks it, so that a rule that could
not fail would be seen.
"""

from __future__ import annotations

import ast
import importlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ARCHITECTURE = ROOT / "docs" / "architecture.md"
KINDS_LAYER = "resource kinds"
RPC_USER = "trioweb.distrib"


@dataclass(frozen=True)
class Place:
    layer: int
    layer_name: str
    entry: str  # the table's entry the module falls under


def layer_table() -> dict[str, Place]:
    """Entry (a module or package) → its place, from the "Layers" table."""
    table: dict[str, Place] = {}
    rows = re.findall(r"^\| (\d+)\. ([^|]+?) \| (.+?) \|$", ARCHITECTURE.read_text(), re.MULTILINE)
    assert rows, "docs/architecture.md has no layer table"
    for number, name, cell in rows:
        for entry in re.findall(r"`([\w.]+)`", cell):
            table[entry] = Place(int(number), name, entry)
    return table


TABLE = layer_table()


def place_of(module: str) -> Place | None:
    """The place of the longest entry that is ``module`` or a package holding it."""
    best = None
    for entry, place in TABLE.items():
        if (module == entry or module.startswith(entry + ".")) and (best is None or len(entry) > len(best.entry)):
            best = place
    return best


def module_name(path: Path) -> str:
    """``trioweb/http/_parser.py`` → ``trioweb.http._parser``; a package is its
    name, except the top package's own ``trioweb.__init__`` (placed on its own)."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 2:
        parts.pop()
    return ".".join(parts)


def is_module(name: str) -> bool:
    relative = Path(*name.split("."))
    return (ROOT / relative).with_suffix(".py").is_file() or (ROOT / relative / "__init__.py").is_file()


def package_of(path: Path, module: str) -> str:
    return module if path.name == "__init__.py" else module.rpartition(".")[0]


def imports_of(path: Path) -> Iterator[tuple[int, str]]:
    """(line, module) for every module of ``trioweb`` or ``rpc`` that ``path`` imports."""
    package = package_of(path, module_name(path).removesuffix(".__init__"))
    return imports_in(path.read_text(), package)


def imports_in(source: str, package: str) -> Iterator[tuple[int, str]]:
    """Like ``imports_of``, for the source of a module of ``package``."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            # ``from pkg import sub`` imports the module pkg.sub when there is one.
            names = [f"{base}.{alias.name}" if is_module(f"{base}.{alias.name}") else base for alias in node.names]
        else:
            continue
        for name in names:
            if name.split(".")[0] in ("trioweb", "rpc"):
                yield node.lineno, name


def private_owner(module: str) -> str | None:
    """The package a private module belongs to (``trioweb.http`` for
    ``trioweb.http._writer``), None if no part of its name is private."""
    parts = module.split(".")
    for index, part in enumerate(parts):
        if part.startswith("_") and not part.startswith("__"):
            return ".".join(parts[:index])
    return None


def violations(importer: str, target: str) -> list[str]:
    """What is wrong with ``importer`` importing ``target`` (both module names)."""
    problems = []
    owner = private_owner(target)
    if owner is not None and not (importer == owner or importer.startswith(owner + ".")):
        problems.append(f"{target} is private to {owner}")
    if not importer.startswith(("trioweb", "rpc")):
        return problems  # examples: only the private rule applies
    here, there = place_of(importer), place_of(target)
    for name, place in ((importer, here), (target, there)):
        if place is None:
            problems.append(f"{name} has no place in the layer table of docs/architecture.md")
    if here is None or there is None:
        return problems
    if there.layer > here.layer:
        problems.append(f"points up: {here.layer_name} ({importer}) imports {there.layer_name} ({target})")
    if here.layer_name == KINDS_LAYER and there.layer_name == KINDS_LAYER and here.entry != there.entry:
        problems.append(f"a resource kind imports another: {here.entry} imports {there.entry}")
    if target.split(".")[0] == "rpc" and importer.split(".")[0] == "trioweb" and here.entry != RPC_USER:
        problems.append(f"only {RPC_USER} uses rpc")
    if target.split(".")[0] == "trioweb" and importer.split(".")[0] == "rpc":
        problems.append("rpc imports nothing of trioweb")
    return problems


def source_files(*folders: str) -> list[Path]:
    return sorted(path for folder in folders for path in (ROOT / folder).rglob("*.py"))


def test_every_module_has_a_place() -> None:
    unplaced = [module_name(path) for path in source_files("trioweb", "rpc") if place_of(module_name(path)) is None]
    assert not unplaced, "add to the layer table of docs/architecture.md: " + ", ".join(unplaced)


def test_the_table_names_only_modules_that_exist() -> None:
    missing = [entry for entry in TABLE if entry != "trioweb.__init__" and not is_module(entry)]
    assert not missing, f"the layer table names modules that do not exist: {missing}"


def test_no_import_breaks_the_layers() -> None:
    found = []
    for path in source_files("trioweb", "rpc"):
        importer = module_name(path)
        for line, target in imports_of(path):
            found += [f"{path.relative_to(ROOT)}:{line}: {problem}" for problem in violations(importer, target)]
    assert not found, "\n".join(found)


def test_examples_use_only_public_modules() -> None:
    found = []
    for path in source_files("examples") + sorted((ROOT / "examples").rglob("*.rpy")):
        for line, target in imports_of(path):
            found += [f"{path.relative_to(ROOT)}:{line}: {problem}" for problem in violations("examples", target)]
    assert not found, "\n".join(found)


@pytest.mark.parametrize(("importer", "target", "problem"), [
    ("trioweb.distrib.subscription", "trioweb.static", "a resource kind imports another"),
    ("trioweb.static._listing", "trioweb.script", "a resource kind imports another"),
    ("trioweb.http._connection", "trioweb.server", "points up"),
    ("trioweb.resource", "trioweb.static", "points up"),
    ("trioweb.script", "trioweb.cli", "points up"),
    ("rpc._broker", "trioweb.http", "rpc imports nothing of trioweb"),
    ("trioweb.static", "rpc", "only trioweb.distrib uses rpc"),
    ("trioweb.server", "trioweb.http._writer", "private to trioweb.http"),
    ("trioweb.cli._distrib_options", "trioweb.distrib._admission", "private to trioweb.distrib"),
    ("trioweb.distrib", "rpc._protocol", "private to rpc"),
    ("examples", "trioweb._request", "private to trioweb"),
    ("trioweb.cli", "trioweb.newthing", "has no place"),
])
def test_each_rule_catches_what_breaks_it(importer: str, target: str, problem: str) -> None:
    assert any(problem in found for found in violations(importer, target)), violations(importer, target)


@pytest.mark.parametrize(("importer", "target"), [
    ("trioweb.distrib.subscription", "trioweb._request"),
    ("trioweb.distrib.subscription", "trioweb.distrib._backend"),
    ("trioweb.distrib.subscription", "rpc"),
    ("trioweb.static", "trioweb._fs"),
    ("trioweb.server", "trioweb.http"),
    ("trioweb.cli", "trioweb.distrib"),
    ("trioweb.http._connection", "trioweb.address"),
])
def test_what_the_rules_allow(importer: str, target: str) -> None:
    assert violations(importer, target) == []


@pytest.mark.parametrize("line", [
    "from trioweb.static import File",
    "from trioweb import static",
    "import trioweb.static._listing",
    "if TYPE_CHECKING:\n    from trioweb.static import File",
    "def later():\n    from ..static import File",
])
def test_a_kind_importing_another_is_found_in_its_source(line: str) -> None:
    """The whole check, on subscription.py with one import added (the one
    the foundation issue names, and other spellings of it): it is reported."""
    source = (ROOT / "trioweb" / "distrib" / "subscription.py").read_text() + "\n" + line + "\n"
    found = [problem for _, target in imports_in(source, "trioweb.distrib")
             for problem in violations("trioweb.distrib.subscription", target)]
    assert any("a resource kind imports another: trioweb.distrib imports trioweb.static" in p for p in found), found


def test_every_public_module_says_what_it_exports() -> None:
    """A module without a private part in its name is public: its ``__all__``
    lists what it offers, and everything listed exists."""
    found = []
    for path in source_files("trioweb", "rpc"):
        module = module_name(path).removesuffix(".__init__")
        if private_owner(module) is not None:
            continue
        tree = ast.parse(path.read_text())
        declared = [node for node in tree.body if isinstance(node, (ast.Assign, ast.AnnAssign))
                    and any(isinstance(target, ast.Name) and target.id == "__all__"
                            for target in (node.targets if isinstance(node, ast.Assign) else [node.target]))]
        if not declared:
            found.append(f"{module} has no __all__")
            continue
        imported = importlib.import_module(module)
        found += [f"{module}.__all__ names {name}, which it lacks"
                  for name in imported.__all__ if not hasattr(imported, name)]
    assert not found, "\n".join(found)
