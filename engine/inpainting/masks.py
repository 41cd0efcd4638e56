"""`open_mask`: the cloud mask an inpainting run asks for, built from its sources (layers, QA bits, detection)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping

from ..errors import InputError
from ..vector import is_vector_path
from .detect import DetectedMask
from .qa import QA_EXAMPLES
from .sources import NO_MASK, CombinedMask, Grid, GridBand, MaskSource, QAMask, RasterMask, VectorMask, dilate

__all__ = ["NO_MASK", "Grid", "GridBand", "dilate", "open_mask"]

# --- factory -----------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def open_mask(grid: Grid, *, mask_path: str | os.PathLike | None = None, mask_layer: str | None = None,
              qa_path: str | os.PathLike | None = None, qa_band: int | None = None,
              qa_expression: str | None = None, detect: bool = False,
              input_path: str | os.PathLike | None = None, detect_bands: Mapping[str, int] | str | None = None,
              dilate: int = 0) -> Iterator[CombinedMask]:
    """The OR of the mask sources given, dilated by `dilate` px, on `grid`; closes them on exit.

    `mask_path`: a raster (non-zero = cloud) or a GeoPackage / GeoJSON polygon
    layer (`mask_layer` names it). `qa_expression` on band `qa_band` of
    `qa_path`, or of the input raster when no QA file is given. `detect`: the
    spectral test on `input_path`, bands from `detect_bands` or band names.
    """
    sources: list[MaskSource] = []
    try:
        if mask_path:
            if is_vector_path(mask_path):
                sources.append(VectorMask(mask_path, grid, mask_layer))
            else:
                sources.append(RasterMask(mask_path, grid))
        if qa_expression or qa_band or qa_path:
            if not qa_expression:
                raise InputError(f"a QA band was given without an expression to test it; {QA_EXAMPLES}")
            path = qa_path or input_path
            if not path:
                raise InputError("a QA expression was given without a QA raster; give the QA raster or the input")
            if qa_band is None and not qa_path:
                raise InputError("a QA expression was given but no QA band; choose which band of the input is QA")
            sources.append(QAMask(path, qa_band, qa_expression, grid))
        if detect:
            if not input_path:
                raise InputError("cloud detection needs the input raster")
            sources.append(DetectedMask(input_path, detect_bands or None, grid=grid))
        combined = CombinedMask(sources, grid, dilate)
        yield combined
    finally:
        for source in sources:
            source.close()
