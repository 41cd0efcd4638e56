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
