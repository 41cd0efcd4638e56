"""Renders QGIS layers, with their styles, onto exactly the pixel grid of a raster,
strip by strip, as (3, rows, width) uint8 RGB arrays, and reads their legends.

This is the QGIS side of map targets: the engine never renders, it only reads the
resulting GeoTIFF and the legend that decodes its colours back to classes.
Rendering is aliased (no antialiasing, no labels, no simplification), so every
pixel is exactly one symbol's colour or the background.

render_map_target() is the body of satgen:render_map_target: it renders the strips
and hands them to the engine (engine/translation/targets.py), which writes the
georeferenced GeoTIFF and the legend and counts the colours.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
from qgis.core import (
    Qgis,
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsCoordinateTransformContext,
    QgsCsException,
    QgsExpressionContext,
    QgsExpressionContextUtils,
    QgsMapLayer,
    QgsMapRendererCustomPainterJob,
    QgsMapSettings,
    QgsProcessingException,
    QgsRasterLayer,
    QgsRectangle,
    QgsRenderContext,
    QgsSimpleFillSymbolLayer,
    QgsVectorLayer,
)
from qgis.PyQt.QtCore import QSize, Qt
from qgis.PyQt.QtGui import QColor, QImage, QPainter

DPI = 96  # fixed, so sizes in mm/points map to the same pixels on every machine
STRIP_ROWS = 512
MAX_STRIP_PIXELS = 16_000_000  # bounds one strip's image (64 MB as ARGB32) on very wide rasters


class RenderError(RuntimeError):
    """QGIS reported errors while rendering a layer."""


@dataclass
class Grid:
    """The pixel grid to render on: north-up, square pixels, in `crs`."""

    crs: QgsCoordinateReferenceSystem
    x_min: float
    y_max: float
    pixel_size: float
    width: int
    height: int

    def extent(self, row0: int = 0, rows: int | None = None) -> QgsRectangle:
        """The map extent of rows [row0, row0 + rows): a slice of the whole extent."""
        rows = self.height - row0 if rows is None else rows
        return QgsRectangle(self.x_min, self.y_max - (row0 + rows) * self.pixel_size,
                            self.x_min + self.width * self.pixel_size, self.y_max - row0 * self.pixel_size)


@dataclass
class LayerLegend:
    """What one layer contributes to the legend, and why it may not decode cleanly."""

    layer: str
    entries: list[tuple[str, tuple[int, int, int]]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    draws_nothing: str = ""  # non-empty: why this layer draws nothing


def map_settings(layers: list[QgsMapLayer], grid: Grid, background: QColor,
                 transform_context: QgsCoordinateTransformContext | None = None,
                 expression_context: QgsExpressionContext | None = None) -> QgsMapSettings:
    """Settings for pure-colour rendering of `layers` (first on top) onto `grid`."""
    settings = QgsMapSettings()
    settings.setLayers(layers)
    settings.setDestinationCrs(grid.crs)
    if transform_context is not None:
        settings.setTransformContext(transform_context)
    settings.setOutputDpi(DPI)
    settings.setBackgroundColor(background)
    settings.setOutputImageFormat(QImage.Format.Format_ARGB32)
    flags = Qgis.MapSettingsFlag
    settings.setFlag(flags.Antialiasing, False)  # edges stay one colour or the other
    settings.setFlag(flags.DrawLabeling, False)  # labels and diagrams are not classes
    settings.setFlag(flags.UseRenderingOptimization, False)  # no simplification: the same geometry in every strip
    settings.setFlag(flags.DrawEditingInfo, False)
    settings.setFlag(flags.DrawSelection, False)
    settings.setFlag(flags.RenderMapTile, True)  # strips are tiles: nothing may depend on a strip's edges
    if expression_context is None:
        expression_context = QgsExpressionContext()
        expression_context.appendScope(QgsExpressionContextUtils.globalScope())
    settings.setExpressionContext(expression_context)  # a strip's map scope is added per strip
    return settings


def unclip_symbols(layer: QgsMapLayer) -> None:
    """Stop QGIS clipping features to each strip's extent (on a layer clone only).

    Clipping adds vertices on the strip's edge; their rounding tilts polygon edges
    by a hair, which flips pixels whose centres lie exactly on an edge (common with
    whole-metre vertices on a 10 m grid), so strips would differ from one render.
    """
    if isinstance(layer, QgsVectorLayer) and layer.renderer() is not None:
        for symbol in layer.renderer().symbols(QgsRenderContext()):
            symbol.setClipFeaturesToExtent(False)


def qimage_to_rgb(image: QImage) -> np.ndarray:
    """(3, rows, cols) uint8 copy of a Format_ARGB32/RGB32 image's colours (alpha dropped)."""
    if image.format() not in (QImage.Format.Format_ARGB32, QImage.Format.Format_RGB32):
        image = image.convertToFormat(QImage.Format.Format_ARGB32)
    rows, cols = image.height(), image.width()
    bits = image.constBits()
    bits.setsize(image.sizeInBytes())
    # each row is padded to bytesPerLine; ARGB32 is one 0xAARRGGBB word per pixel,
    # so its bytes are B, G, R, A on little-endian machines and A, R, G, B on big-endian
    pixels = np.frombuffer(bits, np.uint8).reshape(rows, image.bytesPerLine())[:, :cols * 4].reshape(rows, cols, 4)
    order = [2, 1, 0] if sys.byteorder == "little" else [1, 2, 3]
    return np.ascontiguousarray(pixels[:, :, order].transpose(2, 0, 1))


def render_strip(settings: QgsMapSettings, grid: Grid, row0: int, rows: int) -> np.ndarray:
    """Render rows [row0, row0 + rows) of `grid` with `settings` as (3, rows, width) uint8."""
    settings = QgsMapSettings(settings)
    settings.setExtent(grid.extent(row0, rows))
    settings.setOutputSize(QSize(grid.width, rows))
    expression_context = QgsExpressionContext(settings.expressionContext())
    expression_context.appendScope(QgsExpressionContextUtils.mapSettingsScope(settings))
    settings.setExpressionContext(expression_context)
    image = QImage(grid.width, rows, QImage.Format.Format_ARGB32)
    image.fill(settings.backgroundColor())
    painter = QPainter(image)
    try:
        job = QgsMapRendererCustomPainterJob(settings, painter)
        job.renderSynchronously()
    finally:
        painter.end()
    errors = [f"{e.layerID}: {e.message}" for e in job.errors()]
    if errors:
        raise RenderError("QGIS could not render: " + "; ".join(errors))
    return qimage_to_rgb(image)


def strip_rows_for(width: int, strip_rows: int = STRIP_ROWS) -> int:
    return max(1, min(strip_rows, MAX_STRIP_PIXELS // max(width, 1)))


def render_layers_to_grid(layers: list[QgsMapLayer], grid: Grid, background: QColor, sink, feedback=None,
                          strip_rows: int = STRIP_ROWS, transform_context=None, expression_context=None) -> None:
    """Render `layers` (first on top) onto `grid` top to bottom, in horizontal strips
    of at most `strip_rows` rows, passing each as a (3, rows, width) uint8 array to `sink`.

    Memory stays bounded by one strip. `feedback` (the engine's Feedback or None) gets
    progress, and is checked for cancellation before every strip. Layers in other
    CRSs are reprojected on the fly.
    """
    for rgb in render_strips(layers, grid, background, feedback, strip_rows, transform_context, expression_context):
        sink(rgb)


def render_strips(layers: list[QgsMapLayer], grid: Grid, background: QColor, feedback=None,
                  strip_rows: int = STRIP_ROWS, transform_context=None, expression_context=None
                  ) -> Iterator[np.ndarray]:
    """The strips of render_layers_to_grid, top to bottom, each rendered when asked for."""
    settings = map_settings(layers, grid, background, transform_context, expression_context)
    step = strip_rows_for(grid.width, strip_rows)
    for row0 in range(0, grid.height, step):
        if feedback is not None:
            feedback.check_cancelled()
        rows = min(step, grid.height - row0)
        yield render_strip(settings, grid, row0, rows)
        if feedback is not None:
            feedback.progress((row0 + rows) / grid.height)


def extent_in(layer: QgsMapLayer, crs: QgsCoordinateReferenceSystem,
              transform_context: QgsCoordinateTransformContext | None = None) -> QgsRectangle | None:
    """The layer's extent in `crs` (null for a layer without features); None where it
    cannot be transformed."""
    if isinstance(layer, QgsVectorLayer) and layer.featureCount() == 0:
        return QgsRectangle()
    extent = layer.extent()
    if extent.isNull():
        return extent
    if layer.crs() == crs or not layer.crs().isValid():
        return extent
    transform = QgsCoordinateTransform(layer.crs(), crs, transform_context or QgsCoordinateTransformContext())
    try:
        return transform.transformBoundingBox(extent)
    except QgsCsException:
        return None


# -- legend ---------------------------------------------------------------------

def _rgb(color: QColor) -> tuple[int, int, int]:
    return (color.red(), color.green(), color.blue())


def _symbol_warnings(symbol, label: str) -> list[str]:
    """Reasons why pixels drawn with `symbol` may not be exactly its legend colour."""
    out = []
    color = symbol.color()
    if symbol.opacity() < 1.0 or 0 < color.alpha() < 255:
        out.append(f"'{label}' is semi-transparent, so its pixels are blended with what lies beneath "
                   f"and differ from its legend colour; make it opaque")
    layers = [symbol.symbolLayer(i) for i in range(symbol.symbolLayerCount())]
    layers = [s for s in layers if s.enabled()]
    if len(layers) > 1:
        out.append(f"'{label}' has {len(layers)} symbol layers; only the first one's colour is in the legend")
    for sl in layers[:1]:
        if isinstance(sl, QgsSimpleFillSymbolLayer):
            if sl.brushStyle() not in (Qt.BrushStyle.SolidPattern, Qt.BrushStyle.NoBrush):
                out.append(f"'{label}' has a hatched fill; its pixels mix the fill colour with what lies beneath")
            if sl.strokeStyle() != Qt.PenStyle.NoPen and sl.strokeColor().alpha() > 0:
                out.append(f"'{label}' has an outline, whose colour is not in the legend; "
                           f"set its stroke style to 'No Pen' for a decodable target")
    return out


def layer_legend(layer: QgsMapLayer) -> LayerLegend:
    """Label and RGB colour of every class the layer's style draws.

    Vector layers: each checked, visible symbol of the renderer's legend (categories,
    ranges, rules, or the single symbol, labelled with the layer's name). Raster
    layers: the classes of paletted or discrete pseudocolour renderers.
    """
    legend = LayerLegend(layer.name())
    if isinstance(layer, QgsVectorLayer):
        renderer = layer.renderer()
        if renderer is None or renderer.type() == "nullSymbol":
            legend.draws_nothing = "its renderer is 'No Symbols'"
            return legend
        items = renderer.legendSymbolItems()
        checkable = renderer.legendSymbolItemsCheckable()  # categories, ranges and rules can be switched off
        for item in items:
            symbol = item.symbol()
            if symbol is None or checkable and not renderer.legendSymbolItemChecked(item.ruleKey()):
                continue  # a rule group without its own symbol, or a category switched off
            if symbol.opacity() == 0 or symbol.color().alpha() == 0:
                continue
            label = item.label() or layer.name()
            legend.entries.append((label, _rgb(symbol.color())))
            legend.warnings += _symbol_warnings(symbol, label)
        if not legend.entries:
            legend.draws_nothing = (f"its {renderer.type()} renderer has no visible symbols"
                                    if items else f"its {renderer.type()} renderer has no symbols or categories")
        if layer.opacity() < 1.0:
            legend.warnings.append(f"layer '{layer.name()}' has opacity {layer.opacity():.2f}, which blends its "
                                   f"colours; set it to 100 %")
    elif isinstance(layer, QgsRasterLayer):
        renderer = layer.renderer()
        if renderer is None:
            legend.draws_nothing = "it has no renderer"
            return legend
        for label, color in renderer.legendSymbologyItems():
            legend.entries.append((label, _rgb(color)))
        if renderer.type() not in ("paletted", "singlebandpseudocolor") or not legend.entries:
            legend.warnings.append(f"raster layer '{layer.name()}' is drawn with continuous colours "
                                   f"({renderer.type()}), which are not in the legend")
    else:
        legend.warnings.append(f"layer '{layer.name()}' ({type(layer).__name__}) is rendered, "
                               f"but its colours are not in the legend")
    return legend


def build_legend(legends: list[LayerLegend], background: QColor) -> tuple[dict, list[str]]:
    """The legend {label: [r, g, b], ..., "background": [r, g, b]} and warnings about it.

    A label used by two layers with different colours is disambiguated by layer name;
    colours shared by different labels cannot be told apart and are reported.
    """
    legend: dict[str, list[int]] = {}
    warnings = []
    for layer_legend_ in legends:
        for label, rgb in layer_legend_.entries:
            key = label
            if key in legend and legend[key] != list(rgb):
                key = f"{label} ({layer_legend_.layer})"
            if key == "background":
                key = f"background ({layer_legend_.layer})"
            legend.setdefault(key, list(rgb))
    legend["background"] = list(_rgb(background))
    by_color: dict[tuple, list[str]] = {}
    for label, rgb in legend.items():
        by_color.setdefault(tuple(rgb), []).append(label)
    for rgb, labels in by_color.items():
        if len(labels) > 1:
            warnings.append(f"{', '.join(labels)} share the colour {list(rgb)}; the target cannot tell them apart")
    return legend, warnings


def closest_colours(legend: dict) -> tuple[int, str, str] | None:
    """The smallest max-channel difference between two distinct legend colours, and whose."""
    items = [(k, v) for k, v in legend.items()]
    best = None
    for i, (a, ca) in enumerate(items):
        for b, cb in items[i + 1:]:
            if ca == cb:
                continue
            d = max(abs(x - y) for x, y in zip(ca, cb, strict=True))
            if best is None or d < best[0]:
                best = (d, a, b)
    return best


# -- map targets (satgen:render_map_target) -------------------------------------

def apply_style(layers: list[QgsMapLayer], style: str, warn) -> str:
    """Load the .qml `style` onto every vector layer of `layers`, which must be clones (the
    user's layers keep their styles). Return the problem for the user, '' when there is none;
    `warn(message)` gets what is only worth a warning."""
    vectors = [layer for layer in layers if isinstance(layer, QgsVectorLayer)]
    if not os.path.isfile(style):
        return f"STYLE: the style file {style} does not exist; give the path of a .qml file"
    if not vectors:
        warn("STYLE is ignored: none of LAYERS is a vector layer")
    for layer in vectors:
        message, ok = layer.loadNamedStyle(style)
        if not ok:
            return (f"STYLE: QGIS could not load the style {style} onto layer '{layer.name()}': "
                    f"{message or 'unknown error'}. Check that it is a QGIS layer style file "
                    f"(.qml, saved from a vector layer's Symbology)")
    return ""


def check_target_layers(layers: list[QgsMapLayer], crs: QgsCoordinateReferenceSystem, grid_extent: QgsRectangle,
                        background: QColor, warn, transform_context: QgsCoordinateTransformContext | None = None
                        ) -> dict:
    """The legend {label: [r, g, b], ..., "background": [r, g, b]} of a map target of `layers`
    on a grid of `grid_extent` in `crs`. Raise a clear error for a target that would be empty
    or undecodable; `warn(message)` gets what may make it hard to decode."""
    legends = [layer_legend(layer) for layer in layers]
    silent = [lg for lg in legends if lg.draws_nothing]
    if silent:
        raise QgsProcessingException(
            "a target with no styled layers: " + "; ".join(f"layer '{lg.layer}' draws nothing "
                                                           f"({lg.draws_nothing})" for lg in silent)
            + ". Give each layer a style with visible symbols (Layer Properties > Symbology), pass a "
              "STYLE file, or leave such layers out of LAYERS")

    outside = []
    for layer in layers:
        extent = extent_in(layer, crs, transform_context)
        if extent is not None and (extent.isNull() or not extent.intersects(grid_extent)):
            outside.append(layer.name())
    if len(outside) == len(layers):
        raise QgsProcessingException(
            f"none of LAYERS overlaps the INPUT raster's extent ({grid_extent.toString(0)} in "
            f"{crs.authid() or crs.description()}), so the target would be only background. "
            f"Choose layers that cover the raster's area, and check that each layer's CRS is set correctly")
    for name in outside:
        warn(f"layer '{name}' lies outside the INPUT raster's extent and draws nothing there")

    legend, warnings = build_legend(legends, background)
    for message in [w for lg in legends for w in lg.warnings] + warnings:
        warn(message)
    closest = closest_colours(legend)
    if closest is not None and closest[0] < 30:
        warn(f"the colours of '{closest[1]}' and '{closest[2]}' differ by only {closest[0]} "
             f"(of 255) in a channel; decoding the map back to classes will confuse them")
    return legend


def render_map_target(layers: list[QgsMapLayer], input_path: str, crs: QgsCoordinateReferenceSystem,
                      background: QColor, output: str, legend: dict, legend_path: str | None, feedback, warn,
                      transform_context: QgsCoordinateTransformContext | None = None,
                      expression_context: QgsExpressionContext | None = None) -> None:
    """Render `layers` (clones, first on top; see check_target_layers for `legend`) onto the grid
    of the raster `input_path` (in `crs`), written as an RGB GeoTIFF at `output` and, with
    `legend_path`, the legend as JSON; nothing is written on an error or cancel.

    QGIS renders strip by strip into a plain temporary GeoTIFF (through QGIS's own GDAL), which the
    engine, wherever it runs (runner.py), writes as the target and counts the colours of.
    `feedback` (the engine's Feedback) gets progress, messages and cancel; `warn(message)` is told
    when the target is only background.
    """
    from . import runner
    from .engine.calls import Call
    from .engine.fileio import check_not_same_file

    layer_files = [layer.source().split("|")[0] for layer in layers]
    check_not_same_file([input_path, *layer_files], [output, legend_path])
    target = runner.run(Call("map_target_grid", input_path), feedback)
    grid = Grid(crs=crs, **target)
    for layer in layers:
        unclip_symbols(layer)
    started = time.perf_counter()
    feedback.info(f"rendering {len(layers)} layer(s) onto {grid.width} x {grid.height} px "
                  f"at {grid.pixel_size:g} map units per pixel")
    rendered = temporary_tif()
    try:
        try:
            write_strips(rendered, grid, render_strips(layers, grid, background, feedback,
                                                       transform_context=transform_context,
                                                       expression_context=expression_context))
        except RenderError as exc:
            raise QgsProcessingException(str(exc)) from None
        written = runner.run(Call("write_rendered_map_target", rendered, input_path, output, legend, legend_path),
                             feedback)
    finally:
        for path in (rendered, rendered + ".aux.xml"):
            with contextlib.suppress(OSError):  # a clean-up that fails must not hide the real error
                os.remove(path)
    feedback.info(f"rendered in {time.perf_counter() - started:.1f} s; share of pixels per legend colour: "
                  + written["summary"])
    if written["background_only"]:
        warn("every pixel of the target is background: no layer draws inside the raster, "
             "although their extents overlap it")


def temporary_tif() -> str:
    """A new, empty .tif path in QGIS's temporary folder (removed by the caller)."""
    import tempfile

    from qgis.core import QgsProcessingUtils

    handle, path = tempfile.mkstemp(prefix="satgen_rendered_", suffix=".tif", dir=QgsProcessingUtils.tempFolder())
    os.close(handle)
    return path


def write_strips(path: str, grid: Grid, strips: Iterator[np.ndarray]) -> None:
    """(3, rows, width) uint8 strips, top to bottom, into a plain 3-band GeoTIFF at `path` (pixel grid
    only: the engine writes the georeferenced target)."""
    from osgeo import gdal

    data = gdal.GetDriverByName("GTiff").Create(path, grid.width, grid.height, 3, gdal.GDT_Byte,
                                                ["BIGTIFF=IF_SAFER", "INTERLEAVE=BAND"])
    if data is None:
        raise QgsProcessingException(f"cannot write the rendered map to {path}: {gdal.GetLastErrorMsg()}; "
                                     f"free space in QGIS's temporary folder")
    data.SetGeoTransform((grid.x_min, grid.pixel_size, 0.0, grid.y_max, 0.0, -grid.pixel_size))
    gdal.ErrorReset()
    try:
        row = 0
        for rgb in strips:
            rows = rgb.shape[1]
            data.WriteRaster(0, row, grid.width, rows, np.ascontiguousarray(rgb).tobytes(), grid.width, rows,
                             gdal.GDT_Byte, [1, 2, 3])
            row += rows
        data.FlushCache()
        if gdal.GetLastErrorType() >= gdal.CE_Failure:
            raise QgsProcessingException(f"cannot write the rendered map to {path}: {gdal.GetLastErrorMsg()}")
    finally:
        data = None  # closes the file
