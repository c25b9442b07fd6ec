"""The house stays as ``mrla_nas/__init__.py`` describes it: layers import only the layers below them,
no module cycle, and the package and its command line load no torch until a command needs it.

The import graph is read from the source (an AST walk, deferred imports inside functions included),
so an upward import fails here even where it would hold at run time.
"""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "mrla_nas"

# Bottom first. A module may import its own layer or a lower one; names in one tuple are one layer.
LAYERS = [("errors", "settings", "yaml_io"), ("arch",), ("kernels",), ("layers",), ("models",), ("cost",),
          ("space",), ("training",), ("rundir",), ("objectives",), ("search",), ("analysis",), ("cli",)]
LAYER_OF = {top: i for i, names in enumerate(LAYERS) for top in names}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules():
    return {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _imports(name: str, path: Path, modules) -> set:
    """The package's modules that ``name`` imports, anywhere in its file."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()

    def resolve(target: str):
        while target and target not in modules:  # `from pkg import name`: name is an attribute of pkg
            target = target.rpartition(".")[0]
        if target and target != name:
            found.add(target)

    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("mrla_nas"):
                    resolve(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            elif node.module and node.module.startswith("mrla_nas"):
                source = node.module
            else:
                continue
            for alias in node.names:
                resolve(f"{source}.{alias.name}")
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "import_module"
              and node.args and isinstance(node.args[0], ast.Constant)
              and str(node.args[0].value).startswith("mrla_nas")):
            resolve(node.args[0].value)  # importlib.import_module("mrla_nas...."): a deferred import too
    return found


@pytest.fixture(scope="module")
def graph():
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def _layer(module: str):
    parts = module.split(".")
    return LAYER_OF.get(parts[1]) if len(parts) > 1 else None


def test_every_module_has_a_layer(graph):
    assert sorted(m for m in graph if m != "mrla_nas" and _layer(m) is None) == []


def test_imports_only_go_down(graph):
    upward = [f"{m} -> {t}" for m, targets in graph.items() for t in targets
              if m != "mrla_nas" and t != "mrla_nas" and _layer(t) > _layer(m)]
    assert upward == [], "upward imports (see the layer order in mrla_nas/__init__.py)"


def test_only_the_package_root_imports_the_package_root(graph):
    # `from mrla_nas import X` inside the package would tie every layer to the root's lazy names
    assert sorted(m for m, targets in graph.items() if "mrla_nas" in targets) == []


def test_no_import_cycle(graph):
    # a module importing its package's __init__ while that __init__ imports it is a cycle too
    state, cycles = {}, []

    def visit(module, stack):
        state[module] = "open"
        for target in sorted(graph.get(module, ())):
            if state.get(target) == "open":
                cycles.append(" -> ".join(stack[stack.index(target):] + [target]))
            elif target not in state:
                visit(target, stack + [target])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert cycles == []


def test_the_walk_sees_deferred_and_relative_imports(tmp_path):
    # the guard above is only as good as the walk: pin that it catches the forms the package uses
    pkg = tmp_path / "mrla_nas"
    (pkg / "arch").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "arch" / "__init__.py").write_text("from .base import X\n")
    (pkg / "arch" / "base.py").write_text(
        "import importlib\n"
        "def build():\n    from ..models import build_model\n"
        "def later():\n    importlib.import_module('mrla_nas.search.driver')\n")
    (pkg / "models").mkdir()
    (pkg / "models" / "__init__.py").write_text("from . import build_model\n")
    (pkg / "models" / "build_model.py").write_text("import mrla_nas.arch.base\n")
    (pkg / "search").mkdir()
    (pkg / "search" / "__init__.py").write_text("")
    (pkg / "search" / "driver.py").write_text("")
    modules = {".".join(p.relative_to(tmp_path).with_suffix("").parts).removesuffix(".__init__"): p
               for p in pkg.rglob("*.py")}
    found = {name: _imports(name, path, modules) for name, path in modules.items()}
    assert found["mrla_nas.arch"] == {"mrla_nas.arch.base"}
    assert found["mrla_nas.arch.base"] == {"mrla_nas.models.build_model", "mrla_nas.search.driver"}
    assert found["mrla_nas.models"] == {"mrla_nas.models.build_model"}
    assert found["mrla_nas.models.build_model"] == {"mrla_nas.arch.base"}


def _loads(code: str) -> list:
    """The heavy libraries a fresh interpreter has loaded after running ``code``."""
    probe = code + "\nimport sys\nprint(sorted(m for m in ('torch', 'timm', 'ray', 'optuna', 'fvcore') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                         cwd=PACKAGE.parent).stdout
    return ast.literal_eval(out.strip().splitlines()[-1])


def test_the_package_and_the_command_line_parser_load_no_torch():
    assert _loads("import mrla_nas, mrla_nas.arch, mrla_nas.space, mrla_nas.cost") == []
    assert _loads("from mrla_nas.cli import build_parser\nbuild_parser().format_help()") == []


def test_timm_finds_the_networks_once_it_is_imported():
    assert _loads("import mrla_nas, timm\nassert timm.is_model('mrla_light_resnet20')") == ["timm", "torch"]


DOCS = ["README.md", "search_spaces/README.md", "experiments/README.md",
        *sorted(str(p.relative_to(PACKAGE.parent)) for p in (PACKAGE.parent / "experiments" / "results").glob("*.md"))]


def _resolve(dotted: str):
    import importlib

    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for name in parts[cut:]:
            obj = getattr(obj, name)
        return obj
    raise ImportError(dotted)


@pytest.mark.parametrize("doc", DOCS)
def test_the_docs_name_modules_and_files_that_exist(doc):
    import re

    text = (PACKAGE.parent / doc).read_text()  # a doc the list names and the tree lacks fails here too
    missing = []
    for module, names in re.findall(r"from (mrla_nas[\w.]*) import ([\w, ]+)", text):
        for name in names.replace(" ", "").split(","):
            try:
                _resolve(f"{module}.{name}")
            except (ImportError, AttributeError):
                missing.append(f"from {module} import {name}")
    for dotted in re.findall(r"`(mrla_nas(?:\.\w+)+)", text):
        try:
            _resolve(dotted)
        except (ImportError, AttributeError):
            missing.append(dotted)
    for file in re.findall(r"`((?:mrla_nas|experiments|tests|search_spaces)/[\w./-]*)`", text):
        if not (PACKAGE.parent / file).exists():
            missing.append(file)
    assert missing == []
