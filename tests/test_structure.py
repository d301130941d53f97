"""The package's structure, read from its source with ``ast``: no private name used across modules, and no rollout
shape named outside the shapes package and the algorithm records. Each scan is shown catching a planted violation."""

import ast
from pathlib import Path

import pytest
import torch

from creditzoo.rollout import Rollout
from creditzoo.shapes import SHAPES, get_shape

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "creditzoo"


def private(name: str) -> bool:
    """A private name: one leading underscore, not a dunder."""
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def private_uses(source: str) -> list[str]:
    """Every use of another module's private name in ``source``, as "line: what".

    Two forms: ``from creditzoo.x import _name`` (or a relative import of one), and ``obj._name`` where the
    module defines no ``_name`` itself (no function, class, variable, argument or attribute of that name) and
    ``obj`` is not ``self`` or ``cls`` (an object's own attributes, inherited ones included). Private *modules*
    shared inside a package (``algorithms/_group.py``) are imported by their public names and are allowed.
    """
    tree = ast.parse(source)
    owned: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            owned.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            owned.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            owned.add(node.attr)
        elif isinstance(node, ast.arg):
            owned.add(node.arg)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("creditzoo")):
            module = "." * node.level + (node.module or "")
            found += [f"{node.lineno}: from {module} import {a.name}" for a in node.names if private(a.name)]
        elif isinstance(node, ast.Attribute) and private(node.attr) and node.attr not in owned:
            receiver = node.value
            if not (isinstance(receiver, ast.Name) and receiver.id in ("self", "cls")):
                found.append(f"{node.lineno}: {ast.unparse(node)}")
    return sorted(found, key=lambda use: int(use.split(":")[0]))


def shape_literals(source: str, *, records_allowed: bool, names: frozenset[str] = frozenset(SHAPES)) -> list[str]:
    """Every string constant equal to a rollout shape's name in ``source``, as "line: value".

    Docstrings (and any other bare string statement) are left out; with ``records_allowed`` so is the ``shape=``
    argument of an ``AlgorithmSpec(...)`` call, where an algorithm declares the shape it reads.
    """
    tree = ast.parse(source)
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            skipped.add(id(node.value))
        if records_allowed and isinstance(node, ast.Call) and getattr(node.func, "id", None) == "AlgorithmSpec":
            skipped.update(id(k.value) for k in node.keywords if k.arg == "shape")
    constants = [node for node in ast.walk(tree) if isinstance(node, ast.Constant) and id(node) not in skipped]
    hits = [node for node in constants if isinstance(node.value, str) and node.value in names]
    return [f"{node.lineno}: {node.value!r}" for node in sorted(hits, key=lambda node: (node.lineno, node.col_offset))]


def package_files() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_no_module_uses_another_modules_private_names() -> None:
    found = {str(p.relative_to(ROOT)): uses for p in package_files() if (uses := private_uses(p.read_text()))}
    assert found == {}


def test_the_private_name_scan_catches_planted_uses() -> None:
    planted = (
        "from creditzoo.envs.denoising import _score, DenoisingEnv\n"  # line 1: a private import
        "from . import _sibling\n"  # line 2: a relative one
        "def velocity(env):\n"
        "    return env._model_velocity(1)\n"  # line 4: another module's private method
        "class Mine:\n"
        "    def __init__(self):\n"
        "        self._cache = {}\n"
        "    def merge(self, other):\n"
        "        return self._cache, other._cache, self._helper, __name__.__len__\n"  # all allowed
    )
    assert private_uses(planted) == [
        "1: from creditzoo.envs.denoising import _score",
        "2: from . import _sibling",
        "4: env._model_velocity",
    ]


def test_no_shape_is_named_outside_the_shapes_package_and_the_records() -> None:
    found = {}
    for path in package_files():
        relative = path.relative_to(PACKAGE)
        if relative.parts[0] == "shapes":
            continue
        literals = shape_literals(path.read_text(), records_allowed=relative.parts[0] == "algorithms")
        if literals:
            found[str(relative)] = literals
    assert found == {}


def test_the_shape_literal_scan_catches_planted_literals() -> None:
    planted = (
        '"""A docstring naming the "tree" shape."""\n'
        'SPEC = AlgorithmSpec(fn=f, shape="chain", cost="0")\n'  # line 2: a record, allowed in algorithms/
        'if rollout.shape == "tree":\n'  # line 3: a ladder
        '    table = {"anchor": 1}\n'  # line 4: a table keyed by shape
        '"chain"\n'  # a bare string statement, like a docstring
    )
    assert shape_literals(planted, records_allowed=True) == ["3: 'tree'", "4: 'anchor'"]
    assert shape_literals(planted, records_allowed=False) == ["2: 'chain'", "3: 'tree'", "4: 'anchor'"]
    assert shape_literals('x = "star"\n', records_allowed=False, names=frozenset({"star"})) == ["1: 'star'"]


# ------------------------------------------------------------------------ the contract every shape keeps


@pytest.mark.parametrize("name", list(SHAPES))
def test_every_shape_keeps_the_contract(name: str) -> None:
    shape = get_shape(name)
    assert shape.name == name and shape.description and shape.score_name
    example = Rollout(**shape.example_fields({}))  # its example is a valid Rollout of its own shape
    assert example.shape == name and example.batch_size >= 2 and example.num_steps >= 1
    assert shape.latents_per_row(4, completions=True) >= shape.latents_per_row(4, completions=False) >= 4
    others = [other for other in SHAPES.values() if other is not shape]
    for other in others:
        assert not set(shape.fields) & set(other.fields)  # a Rollout field belongs to one shape
        for field in other.fields:  # a Rollout of this shape refuses another shape's field, naming both
            value = (1,) if field == "split_steps" else torch.zeros(example.batch_size, 2, 1)
            with pytest.raises(ValueError, match=f"{field} belong to {other.name} rollouts, not to {name} rollouts"):
                Rollout(**{**shape.example_fields({}), field: value})
