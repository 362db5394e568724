"""The package's shape: the import contracts of pyproject.toml hold, no module imports
itself in a circle, and the contracts catch a module that breaks them."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .helpers import ROOT

LINT = Path(sys.executable).with_name("lint-imports")


def lint_imports(cwd: Path) -> subprocess.CompletedProcess:
    """lint-imports on the ``distill`` package found in ``cwd`` (its pyproject.toml's
    contracts), without the cache: the graph of the files as they are now."""
    return subprocess.run(
        [str(LINT), "--no-cache"], cwd=cwd, capture_output=True, text=True, timeout=300
    )


def import_cycles(package: str = "distill") -> list[list[str]]:
    """Groups of modules that import each other in a circle (functions' lazy imports
    included): the strongly connected components of the module graph."""
    import grimp

    graph = grimp.build_graph(package)
    modules = sorted(graph.modules)
    edges = {m: sorted(graph.find_modules_directly_imported_by(m) & graph.modules) for m in modules}
    index, low, stack, on_stack, cycles, counter = {}, {}, [], set(), [], [0]

    def visit(m):  # Tarjan's algorithm
        index[m] = low[m] = counter[0]
        counter[0] += 1
        stack.append(m)
        on_stack.add(m)
        for n in edges[m]:
            if n not in index:
                visit(n)
                low[m] = min(low[m], low[n])
            elif n in on_stack:
                low[m] = min(low[m], index[n])
        if low[m] == index[m]:
            group = []
            while True:
                n = stack.pop()
                on_stack.discard(n)
                group.append(n)
                if n == m:
                    break
            if len(group) > 1:
                cycles.append(sorted(group))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * len(modules)))
    for m in modules:
        if m not in index:
            visit(m)
    return cycles


def test_the_import_contracts_hold():
    res = lint_imports(ROOT)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "3 kept, 0 broken" in res.stdout


def test_no_module_imports_itself_in_a_circle():
    assert import_cycles() == []


@pytest.mark.parametrize(
    "module, line, broken",
    [
        ("distill/core/ctc.py", "import torch", "no torch, Lightning or Hydra"),
        ("distill/data/collate.py", "import distill.kd.losses", "layers"),
        ("distill/export/onnx.py", "from distill.lit import recognizer", "Lightning modules"),
    ],
    ids=["torch-in-core", "data-imports-kd", "export-imports-lit"],
)
def test_the_contracts_catch_a_bad_import(tmp_path, module, line, broken):
    """The same contracts on a copy of the package with one bad import added."""
    shutil.copytree(ROOT / "distill", tmp_path / "distill")
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    path = tmp_path / module
    path.write_text(path.read_text() + f"\n{line}  # a deliberate bad import\n")
    res = lint_imports(tmp_path)
    assert res.returncode != 0
    names = [ln for ln in res.stdout.splitlines() if ln.endswith(" BROKEN")]
    assert any(broken in name for name in names), res.stdout
    assert "a deliberate bad import" not in (ROOT / module).read_text()  # the copy only
