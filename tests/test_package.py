"""The plugin zip as plugins.qgis.org receives it: `make package-check` (flake8 at 120 columns, bandit,
size, contents) passes, and the zip holds the plugin with its default models, no development files, in
at most 25 MB (the site's PLUGIN_MAX_UPLOAD_SIZE)."""

from __future__ import annotations

import re
import subprocess
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAX_BYTES = 25_000_000
DEFAULT_MODELS = ("inpaint_s2.satgen", "synthesize_eurosat.satgen", "synthesize_s2_osm.satgen",
                  "translate_s2_osm.satgen", "translate_rgb_dubai.satgen")


@pytest.fixture(scope="module")
def package_check():
    """`make -s package-check` once: it builds dist/satgen_qgis-<version>.zip, then checks it."""
    return subprocess.run(["make", "-s", "package-check"], cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_package_check_passes(package_check):
    assert package_check.returncode == 0, package_check.stdout[-6000:] + package_check.stderr[-6000:]


def test_zip_holds_no_development_files_and_fits(package_check):
    zips = list((ROOT / "dist").glob("satgen_qgis-*.zip"))
    assert len(zips) == 1, f"make package built {zips}: {package_check.stderr[-3000:]}"
    (archive,) = zips
    assert archive.stat().st_size <= MAX_BYTES, f"{archive.name}: {archive.stat().st_size} bytes"
    with zipfile.ZipFile(archive) as z:
        names = z.namelist()
    assert {name.split("/")[0] for name in names} == {"satgen_qgis"}
    # the size counts what users get: the plugin, its engine and the default models
    assert "satgen_qgis/__init__.py" in names and "satgen_qgis/engine/pipeline.py" in names
    assert all(f"satgen_qgis/resources/models/{model}" in names for model in DEFAULT_MODELS)
    assert not [n for n in names if "__pycache__" in n or n.endswith((".pyc", ".pyo"))]
    assert not [n for n in names if "/devtools/" in n]
    assert not [n for n in names if re.search(r"/tests?/|/conftest\.py$|/test_[^/]*\.py$", n)]
    # benchmarks, sample-data fetching, experiment scripts: development tools, kept out of the plugin
    assert not [n for n in names if re.search(r"bench|sample_?data|experiment", n.lower())]
    assert not [n for n in names if re.search(r"/\.[^/]", n)]  # hidden files: plugins.qgis.org flags them
