"""The engine stays free of QGIS: no module under engine/ imports qgis, PyQt or osgeo."""

import ast
import subprocess
import sys
from pathlib import Path

ENGINE = Path(__file__).resolve().parents[2] / "engine"
FORBIDDEN = ("qgis", "PyQt5", "PyQt6", "PyQt", "osgeo", "processing")


def imported_modules(path: Path):
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module


def test_no_engine_module_imports_qgis_pyqt_or_osgeo():
    offenders = [
        f"{path.relative_to(ENGINE.parent)} imports {name}"
        for path in sorted(ENGINE.rglob("*.py"))
        for name in imported_modules(path)
        if name.split(".")[0] in FORBIDDEN
    ]
    assert offenders == []


def test_importing_the_engine_loads_no_qgis_module():
    code = ("import sys, engine.pipeline, engine.cli, engine.modelfile; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('qgis', 'PyQt5', 'osgeo')]; print(bad)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ENGINE.parent, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_engine_uses_only_relative_imports_of_itself():
    # the plugin zip ships the engine as satgen_qgis.engine; `import engine` would break there
    offenders = [
        str(path.relative_to(ENGINE.parent))
        for path in sorted(ENGINE.rglob("*.py"))
        for name in imported_modules(path)
        if name.split(".")[0] == "engine"
    ]
    assert offenders == []


def test_training_configurations_import_without_torch():
    # the QGIS algorithms read their parameter defaults from them before checking that torch is there
    code = ("import sys; sys.modules.update(torch=None, numpy=None, rasterio=None); "
            "import engine.translation.config, engine.inpainting.config, engine.synthesis.config; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], cwd=ENGINE.parent, capture_output=True, text=True)
    assert out.stdout.strip() == "ok", out.stderr


def test_plugin_and_engine_share_one_copy_of_each_engine_module():
    code = ("import engine.errors, satgen_qgis, satgen_qgis.engine.errors as e, satgen_qgis.engine.translation.apply; "
            "import sys; print(e is engine.errors, sys.modules['engine.translation.apply'] is "
            "sys.modules['satgen_qgis.engine.translation.apply'])")
    out = subprocess.run([sys.executable, "-c", code], cwd=ENGINE.parent, capture_output=True, text=True)
    assert out.stdout.strip() == "True True", out.stderr


def test_one_version_number():
    import engine

    metadata = (ENGINE.parent / "metadata.txt").read_text()
    assert f"version={engine.__version__}\n" in metadata


def _import_graph(packages=("engine", "satgen_qgis")) -> dict[str, set[str]]:
    """Module -> the project modules it imports (at the top or inside functions); `satgen_qgis.engine` is `engine`."""
    root = ENGINE.parent
    modules = {}
    for package in packages:
        for path in (root / package).rglob("*.py"):
            name = ".".join(path.relative_to(root).with_suffix("").parts).removesuffix(".__init__")
            modules[name] = path
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        here = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = ".".join(here[:len(here) - node.level + 1] + [node.module or ""]).strip(".") \
                    if node.level else (node.module or "")
                targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                continue
            for target in targets:
                target = target.replace("satgen_qgis.engine", "engine")
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name and not name.startswith(target + "."):
                    graph[name].add(target)
    return graph


def test_no_import_cycles_in_engine_or_plugin():
    graph = _import_graph()
    assert graph["engine.pipeline"] >= {"engine.raster", "engine.windows"}  # the graph sees imports
    state: dict[str, int] = {}  # 1 on the current path, 2 done

    def visit(node, path):
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                raise AssertionError("import cycle: " + " -> ".join(path[path.index(nxt):] + [nxt]))
            if nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])


def test_the_plugin_imports_qt_only_through_qgis_pyqt():
    """QGIS 3.40 (Qt5) and QGIS 4 (Qt6) both provide qgis.PyQt; a direct PyQt5 import breaks the plugin on Qt6."""
    plugin = ENGINE.parent / "satgen_qgis"
    offenders = [
        f"{path.relative_to(ENGINE.parent)} imports {name}"
        for path in sorted(plugin.rglob("*.py"))
        for name in imported_modules(path)
        if name.split(".")[0] in ("PyQt5", "PyQt6", "PySide2", "PySide6", "sip")
    ]
    assert offenders == []
    assert list(plugin.rglob("*.py"))  # the scan saw the plugin
