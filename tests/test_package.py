"""Package-level rules: light imports, the registries, GPU precision (skipped without CUDA)."""

import ast
from pathlib import Path

import pytest
import torch
from import_probe import loaded_by

from creditzoo.sampling import sde_step


@pytest.mark.slow
def test_algorithms_import_nothing_heavy() -> None:
    heavy = ("diffusers", "transformers", "seaborn", "peft", "scipy")
    modules = "creditzoo.algorithms, creditzoo.rollout, creditzoo.shapes, creditzoo.sampling"
    assert loaded_by(modules, heavy, timeout=120) == []


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_log_prob_on_gpu(dtype: torch.dtype) -> None:
    gen = torch.Generator(device="cuda").manual_seed(0)
    x = torch.randn(8, 16, 64, 64, device="cuda", generator=gen)
    v = torch.randn(8, 16, 64, 64, device="cuda", generator=gen)
    exact = sde_step(v, x, 0.7, 0.6, noise_level=0.7, generator=gen)
    low = sde_step(v.to(dtype), x.to(dtype), 0.7, 0.6, noise_level=0.7, prev_sample=exact.prev_sample.to(dtype))
    assert low.log_prob.dtype == torch.float32
    # the sample itself is rounded to the low precision; the density is still computed in float32
    assert (low.log_prob - exact.log_prob).abs().max().item() < 0.05


def test_the_code_cites_the_users_math_page_not_an_internal_spec() -> None:
    """Docstrings cite docs/math.md (which users have) by a section number that exists there."""
    import re

    root = Path(__file__).resolve().parents[1]
    headings = set(re.findall(r"^#{2,3} (\d+(?:\.\d+)?)[. ]", (root / "docs" / "math.md").read_text(), re.M))
    for path in sorted((root / "creditzoo").rglob("*.py")):
        text = path.read_text()
        assert "ALGORITHMS.md" not in text, f"{path} cites ALGORITHMS.md, which users do not have"
        for match in re.finditer(r"docs/math\.md,? sections? ([\d., and-]+)", text):
            for number in re.findall(r"\d+(?:\.\d+)?", match.group(1)):
                assert number in headings, f"{path}: docs/math.md has no section {number}"
    # the written-up results and scripts users read cite the same page, not the internal one
    documents = [root / "README.md", *(root / "docs").rglob("*.md")]
    documents += [
        p for d in ("studies", "benchmarks") for ext in ("md", "sh", "py") for p in (root / d).rglob(f"*.{ext}")
    ]
    for path in documents:
        assert "ALGORITHMS.md" not in path.read_text(), f"{path} cites ALGORITHMS.md, which users do not have"


def _imports(path: Path, module: str, modules: set[str], *, module_level: bool) -> set[str]:
    """The package modules ``module`` (at ``path``) imports: at module level, or anywhere in it.

    ``from a.b import c`` names module ``a.b.c`` where that is a module, else ``a.b``; imports under
    ``if TYPE_CHECKING:`` never run and are left out.
    """
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                visit(node.orelse)
                continue
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from the package, up level - 1
                    parts = package.split(".")
                    base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
                for alias in node.names:
                    found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
            if module_level and isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                continue
            for field in ("body", "orelse", "finalbody", "handlers"):
                children = getattr(node, field, None)  # an ast node's optional blocks
                if isinstance(children, list) and children and isinstance(children[0], ast.AST):
                    visit([child for child in children if isinstance(child, ast.stmt | ast.ExceptHandler)])

    visit(tree.body)
    return {name for name in found if name in modules and name != module}


def _cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle of ``graph`` (module -> imported modules) as a list of modules, or [] if it has none."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def walk(node: str) -> list[str]:
        state[node] = 1
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                return path[path.index(target) :] + [target]
            if target not in state and (found := walk(target)):
                return found
        state[node] = 2
        path.pop()
        return []

    for start in sorted(graph):
        if start not in state and (found := walk(start)):
            return found
    return []


def _import_graph(*, module_level: bool) -> dict[str, set[str]]:
    root = Path(__file__).resolve().parents[1]
    files = {}
    for path in sorted((root / "creditzoo").rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return {name: _imports(path, name, set(files), module_level=module_level) for name, path in files.items()}


def test_the_cycle_finder_finds_a_cycle_and_none_in_a_chain() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_no_module_level_import_cycle() -> None:
    graph = _import_graph(module_level=True)
    assert graph["creditzoo.learner.grpo"] >= {"creditzoo.learner.config", "creditzoo.shapes"}  # it reads
    assert _cycle(graph) == []


def test_no_import_cycle_through_function_level_imports_either() -> None:
    """Deferred imports (inside functions) keep heavy loads lazy; they must not close a cycle either."""
    assert _cycle(_import_graph(module_level=False)) == []
