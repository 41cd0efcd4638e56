"""Shared fixtures; the repository root goes on sys.path so tests import `engine`
and `satgen_qgis` from the source tree."""

import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
for path in (TESTS.parent, TESTS):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from helpers import make_model  # noqa: E402


@pytest.fixture
def tiny_model(tmp_path):
    return make_model(tmp_path / "tiny.satgen")
