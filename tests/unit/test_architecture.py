"""The architecture as docs/architecture.md states it, checked against the imports of src/tandem.

Imports are read with `ast` (nothing is imported): those under `if TYPE_CHECKING:` do not count, those
inside functions (lazy imports) do, except for module cycles, which only module-level imports make.
A *part* is a top-level package or module of `tandem` (`tandem.sync`, `tandem.device`), or `tandem`
itself (its `__init__`). The parts are ordered in layers by the fenced block of docs/architecture.md
whose info string is `layers`: a part may import only from its own layer or lower ones.
"""

import ast
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import tandem

SRC = Path(tandem.__file__).parent
DOC = Path(__file__).resolve().parents[2] / "docs" / "architecture.md"
SDK_MAY_IMPORT = {"tandem.sdk", "tandem.models"}
DEVICE_INTERNALS = {"store", "domain", "sync"}
"""What the API must not reach through the device (`Device` is its façade)."""


@dataclass(frozen=True)
class Import:
    module: str
    """The importing module."""
    target: str
    """The module imported (for `from M import name`: `M.name` when that is a module, else `M`)."""
    where: str
    """`src/tandem/...py:LINE`"""
    module_level: bool


def part(module: str) -> str:
    """`tandem.sync.engine` → `tandem.sync`; `tandem.device` → itself; `tandem` → itself."""
    return ".".join(module.split(".")[:2])


def module_name(path: Path, src: Path = SRC) -> str:
    parts = list(path.relative_to(src.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports_of(source: str, module: str, is_package: bool, where: str, known: set[str]) -> list[Import]:
    """The imports of `tandem` modules in `source` (the text of `module`), not under `if TYPE_CHECKING:`."""
    found: list[Import] = []

    def visit(nodes: Iterable[ast.AST], module_level: bool) -> None:
        for node in nodes:
            if isinstance(node, ast.If) and _type_checking(node.test):
                visit(node.orelse, module_level)
            elif isinstance(node, ast.Import):
                found.extend(Import(module, alias.name, f"{where}:{node.lineno}", module_level)
                             for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    package = module.split(".")[: None if is_package else -1]
                    package = package[: len(package) - node.level + 1]
                    base = ".".join([*package, *([node.module] if node.module else [])])
                for alias in node.names:
                    target = f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                    found.append(Import(module, target, f"{where}:{node.lineno}", module_level))
            else:
                inside = isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
                visit(ast.iter_child_nodes(node), module_level and not inside)

    visit(ast.parse(source).body, True)
    return [i for i in found if i.target == "tandem" or i.target.startswith("tandem.")]


def source_imports(src: Path = SRC) -> list[Import]:
    paths = sorted(src.rglob("*.py"))
    known = {module_name(path, src) for path in paths}
    return [i for path in paths
            for i in imports_of(path.read_text(), module_name(path, src), path.name == "__init__.py",
                                str(path.relative_to(src.parents[1])), known)]


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (`[a, b, ..., a]`) through each strongly connected component of more than one node."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    components: list[set[str]] = []

    def connect(node: str) -> None:  # Tarjan's algorithm
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in graph.get(node, ()):
            if other not in index:
                connect(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = set(stack[stack.index(node):])
            del stack[stack.index(node):]
            if len(component) > 1:
                components.append(component)

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return sorted(_way_back(graph, component) for component in components)


def _way_back(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """A shortest cycle from the component's first node back to it (breadth first)."""
    start = min(component)
    paths = {start: [start]}
    frontier = [start]
    while True:
        node = frontier.pop(0)
        for other in sorted(graph.get(node, set()) & component):
            if other == start:
                return [*paths[node], start]
            if other not in paths:
                paths[other] = [*paths[node], other]
                frontier.append(other)


def parse_layers(markdown: str) -> dict[str, int]:
    """The layer of each part, from the fenced block ```` ```layers ```` (lines `layer N: PART PART ...`,
    N counting up from 0, bottom first)."""
    lines = iter(markdown.splitlines())
    for line in lines:
        if line.strip() == "```layers":
            break
    else:
        raise AssertionError("no ```layers block")
    layers: dict[str, int] = {}
    for number, line in enumerate(_until_fence(lines)):
        label, colon, names = line.partition(":")
        assert colon and label.strip() == f"layer {number}", f"expected `layer {number}: PART ...`, got {line!r}"
        for name in names.split():
            assert name not in layers, f"{name} is in two layers"
            layers[name] = number
    return layers


def _until_fence(lines: Iterator[str]) -> Iterator[str]:
    for line in lines:
        if line.strip() == "```":
            return
        if line.strip():
            yield line.strip()
    raise AssertionError("the ```layers block is not closed")


def upward(imports: Iterable[Import], layers: dict[str, int]) -> list[str]:
    """The imports of a part from a part of a higher layer (or of no layer)."""
    def layer(name: str) -> str:
        return f"layer {layers[part(name)]}" if part(name) in layers else "no layer"

    return [f"{i.where}: {i.module} ({layer(i.module)}) imports {i.target} ({layer(i.target)})"
            for i in imports if part(i.module) != part(i.target)
            and layers.get(part(i.target), 1 << 30) > layers.get(part(i.module), -1)]


def device_internals(source: str, where: str) -> list[str]:
    """Where `device.store`, `device.domain`, `device.sync` (also `....device.store`) are read."""
    hits = [node for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.Attribute) and node.attr in DEVICE_INTERNALS and (
                (isinstance(node.value, ast.Name) and node.value.id == "device")
                or (isinstance(node.value, ast.Attribute) and node.value.attr == "device"))]
    return [f"{where}:{node.lineno}: device.{node.attr}" for node in sorted(hits, key=lambda n: n.lineno)]


IMPORTS = source_imports()


def test_no_cycle_between_modules() -> None:
    graph: dict[str, set[str]] = {}
    for i in IMPORTS:
        graph.setdefault(i.target, set())
        if i.module_level and i.target != i.module:
            graph.setdefault(i.module, set()).add(i.target)
    assert not cycles(graph), "module-level import cycles: " + "; ".join(" → ".join(c) for c in cycles(graph))


def test_no_cycle_between_parts() -> None:
    graph: dict[str, set[str]] = {}
    for i in IMPORTS:
        graph.setdefault(part(i.target), set())
        if part(i.target) != part(i.module):
            graph.setdefault(part(i.module), set()).add(part(i.target))
    assert not cycles(graph), "cycles between parts: " + "; ".join(" → ".join(c) for c in cycles(graph))


def test_every_part_has_a_layer_and_every_layer_names_parts() -> None:
    layers = parse_layers(DOC.read_text())
    parts = {part(module_name(path)) for path in SRC.rglob("*.py")}
    missing, stale = sorted(parts - set(layers)), sorted(set(layers) - parts)
    assert not missing, f"parts missing from the layers of {DOC.name}: {missing}"
    assert not stale, f"the layers of {DOC.name} name what src/tandem lacks: {stale}"


def test_imports_go_down_the_layers() -> None:
    found = upward(IMPORTS, parse_layers(DOC.read_text()))
    assert not found, "imports of a higher layer:\n" + "\n".join(found)


def test_sdk_imports_only_models() -> None:
    found = [f"{i.where}: {i.target}" for i in IMPORTS
             if part(i.module) == "tandem.sdk" and part(i.target) not in SDK_MAY_IMPORT]
    assert not found, "the SDK imports more of tandem than tandem.models:\n" + "\n".join(found)


def test_api_goes_through_the_device_facade() -> None:
    found = [hit for path in sorted((SRC / "api").rglob("*.py"))
             for hit in device_internals(path.read_text(), str(path.relative_to(SRC.parents[1])))]
    assert not found, "the API reads the device's internals:\n" + "\n".join(found)


# -- the checks themselves catch what they are for ----------------------------------------------------------

SAMPLE = '''
from typing import TYPE_CHECKING
from tandem.store import Store
from . import units
if TYPE_CHECKING:
    from tandem.device import Device
else:
    import tandem.ipc
def lazy():
    from tandem.sdk import Client
'''


def test_imports_of_reads_relative_lazy_and_not_type_checking() -> None:
    found = imports_of(SAMPLE, "tandem.config.objects", False, "f.py", {"tandem.config.units"})
    assert {(i.target, i.module_level) for i in found} == {
        ("tandem.store", True), ("tandem.config.units", True), ("tandem.ipc", True), ("tandem.sdk", False)}


@pytest.mark.parametrize(("graph", "expected"), [
    ({"a": {"b"}, "b": {"c"}, "c": set()}, []),
    ({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}, [["a", "b", "c", "a"]]),
])
def test_cycles(graph: dict[str, set[str]], expected: list[list[str]]) -> None:
    assert cycles(graph) == expected


def test_layer_checks() -> None:
    layers = parse_layers("text\n```layers\nlayer 0: tandem.models\nlayer 1: tandem.store tandem.sdk\n```\n")
    assert layers == {"tandem.models": 0, "tandem.store": 1, "tandem.sdk": 1}
    down = Import("tandem.store.database", "tandem.models.cluster", "database.py:1", True)
    up = Import("tandem.models.api", "tandem.store", "api.py:3", False)
    unknown = Import("tandem.store.database", "tandem.device", "database.py:2", True)
    assert upward([down, up, unknown], layers) == [
        "api.py:3: tandem.models.api (layer 0) imports tandem.store (layer 1)",
        "database.py:2: tandem.store.database (layer 1) imports tandem.device (no layer)"]
    with pytest.raises(AssertionError, match="expected `layer 1"):
        parse_layers("```layers\nlayer 0: a\nlayer 2: b\n```")


def test_device_internals() -> None:
    source = "device.store.get()\nrequest.app.state.device.domain\ndevice.config.read()\nself.store\n"
    assert device_internals(source, "r.py") == ["r.py:1: device.store", "r.py:2: device.domain"]
