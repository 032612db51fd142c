"""The layout is the architecture: imports flow one way, without circles, and the commands
that train nothing start without torch."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "replaymask"
# Lowest first: a module may import from its own layer and the layers below, never above.
LAYERS = [
    ("foundation", {"replaymask.errors", "replaymask.version", "replaymask.plugins"}),
    ("data", {"replaymask.data"}),
    ("core", {"replaymask.core"}),
    ("config", {"replaymask.config"}),
    ("integrations", {"replaymask.integrations"}),  # adapters for Avalanche, Mammoth
    ("experiments", {"replaymask.experiments"}),
    ("api", {"replaymask.api"}),
    ("command line", {"replaymask.cli", "replaymask.__main__"}),
]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> int:
    for index, (_, prefixes) in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return index
    raise AssertionError(f"{module} belongs to no layer: add it to LAYERS")


def imports_of(path: Path) -> set[str]:
    """Every replaymask module ``path`` imports, at any depth (functions too), except
    under ``if TYPE_CHECKING:``."""
    module = module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped = {id(node) for stmt in ast.walk(tree) if isinstance(stmt, ast.If)
               and getattr(stmt.test, "id", None) == "TYPE_CHECKING"
               for node in ast.walk(stmt)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            if base.startswith("replaymask"):
                found.add(base)
                found.update(f"{base}.{alias.name}" for alias in node.names
                             if (PACKAGE.parent / f"{base}.{alias.name}".replace(".", "/")
                                 ).with_suffix(".py").exists())
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("replaymask"))
    return found - {module}


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


@pytest.mark.parametrize("module", sorted(set(MODULES) - {"replaymask"}))
def test_a_module_imports_only_from_its_layer_and_below(module):
    own = layer_of(module)
    upward = sorted(name for name in imports_of(MODULES[module])
                    if name != "replaymask" and layer_of(name) > own)
    assert not upward, f"{module} ({LAYERS[own][0]}) imports upward: {upward}"


def test_the_package_root_only_re_exports_lazily():
    tree = ast.parse(MODULES["replaymask"].read_text(encoding="utf-8"))
    top_level = [node for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))]
    assert all(isinstance(node, ast.Import) or node.module in ("__future__", "version")
               for node in top_level), "replaymask/__init__.py imports eagerly"


def test_no_module_imports_the_package_root():
    offenders = sorted(module for module, path in MODULES.items()
                       if "replaymask" in imports_of(path) and module != "replaymask")
    assert not offenders, f"these import replaymask/__init__ (a circle through it): {offenders}"


def test_there_is_no_import_circle():
    graph = {module: {name for name in imports_of(path) if name in MODULES}
             for module, path in MODULES.items() if module != "replaymask"}
    state: dict[str, int] = {}

    def visit(module: str, trail: list[str]) -> None:
        state[module] = 1
        for name in sorted(graph.get(module, ())):
            if state.get(name) == 1:
                cycle = trail[trail.index(name):] + [name] if name in trail else [module, name]
                raise AssertionError("import circle: " + " -> ".join(cycle))
            if name not in state:
                visit(name, [*trail, name])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])


def _imports_torch(code: str, *args: str) -> bool:
    probe = code + "\nimport sys\nprint(json.dumps('torch' in sys.modules))"
    done = subprocess.run([sys.executable, "-c", "import json\n" + probe, *args],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_import_replaymask_does_not_import_torch():
    assert not _imports_torch("import replaymask; replaymask.__version__")
    assert _imports_torch("import replaymask; replaymask.gms_cross_entropy")  # on first use


@pytest.fixture
def database_with_one_run(tmp_path):
    from replaymask.config import resolve
    from replaymask.experiments.store import ResultsStore

    config = resolve(model="er", buffer_size=20)
    matrix = {"class_il": [[90.0]], "task_il": [[95.0]]}
    metrics = {s: {"average_accuracy": m[0][0], "forgetting": None, "bwt": None, "fwt": None}
               for s, m in matrix.items()}
    result = {"config": config.to_dict(), "accuracy_matrix": matrix, "metrics": metrics,
              "wall_time_s": 1.0}
    store = ResultsStore(tmp_path / "r.db")
    store.record(config.hash, config.to_dict(), result=result)
    store.close()
    return tmp_path / "r.db"


@pytest.mark.parametrize("argv", [["--help"], ["run", "--help"], ["sweep", "--help"],
                                  ["methods"], ["benchmarks"], ["runs", "--db", "DB"],
                                  ["report", "--db", "DB", "--no-plots", "--out", "OUT"]])
def test_commands_that_train_nothing_start_without_torch(argv, database_with_one_run, tmp_path):
    argv = [str(database_with_one_run) if a == "DB" else str(tmp_path / "report") if a == "OUT"
            else a for a in argv]
    code = ("import contextlib, io\nfrom replaymask import cli\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    try:\n        status = cli.main(sys.argv[1:])\n"
            "    except SystemExit as exit:\n        status = exit.code\n"
            "assert status == 0, status\nimport sys")
    assert not _imports_torch("import sys\n" + code, *argv)
