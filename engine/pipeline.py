"""The tile pipeline every apply-tool shares: read tiles, run them through a
model in batches, blend overlaps, write a georeferenced GeoTIFF.

Streaming: tiles are processed one row of tiles at a time. An accumulator one
tile high and one raster wide holds the weighted sum of the model outputs; as
soon as a row of tiles is done, the rows no later tile touches are divided by
the weight sum, written, and the accumulator shifts up. Memory therefore grows
with the raster's width only, never with its height or area.
"""

from __future__ import annotations

import contextlib
import functools
import os
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeAlias

import numpy as np
import rasterio
import rasterio.shutil
import torch
from rasterio.transform import Affine
from rasterio.windows import Window

from . import distributed
from .blending import DeviceStage, HostBlend, on_device
from .card import ModelCard
from .device import resolve_device
from .errors import InputError, ModelFileError, OutputError
from .fileio import atomic_folder, atomic_path, check_geotiff_name, check_not_same_file, temporary_path
from .modelfile import LoadedModel, load_model
from .parallel import in_parts
from .progress import Feedback
from .raster import (
    BLOCK,
    GDAL_ENV,
    JOINS,
    RANGE_CHECK_PIXELS,
    GeoTiffWriter,
    colour_bands,
    ground_resolution,
    is_georeferenced,
    open_raster,
    output_compression,
    output_nodata,
    overview_factors,
    rolling_reader,
    sample_pixels,
    select_bands,
    verify_geotiff,
)
from .scaling import NORMALIZE, BandScaling, cast_to_dtype, fit_percentiles, range_mismatch
from .windows import TileGrid

# (batch, channels, tile, tile) model-space input -> (batch, channels, tile*scale, tile*scale)
Predict = Callable[[np.ndarray], np.ndarray]
# a (channels, rows, cols) chunk of finished model-space rows, its (rows, cols) validity, its first column
Chunk: TypeAlias = "tuple[np.ndarray, np.ndarray, int]"
# (number of finished rows, their chunks left to right) -> written
Sink = Callable[[int, "Iterator[Chunk]"], None]
# (row0, row1, col0, col1) -> (channels, rows, cols) model-space input, validity or None, and
# "needs the model" or None (all): a tile runs only where some valid pixel needs the model
Source = Callable[[int, int, int, int], "tuple[np.ndarray, np.ndarray | None, np.ndarray | None]"]


@dataclass
class TileOptions:
    tile_size: int | None = None  # None: the model card's
    overlap: int | None = None  # None: the model card's
    batch_size: int = 4
    device: str = "auto"
    bands: list[int] | None = None  # 1-based; None: matched from the model card
    overviews: str = "auto"  # of the outputs: "auto" (when long: raster.OVERVIEW_SIDE), "yes", "no"
    join: str = "geotiff"  # how the outputs are written: JOINS
    blend: str = "auto"  # where tiles are stretched, blended and cast: blending.BLENDS (auto: on a CUDA GPU there)


@dataclass
class RunStats:
    tiles_run: int = 0
    tiles_skipped: int = 0
    batch_sizes: list[int] = field(default_factory=list)
    forward_seconds: float = 0.0
    seconds: float = 0.0


def _batches(grid: TileGrid, batch_size: int, strips: range):
    """(strip index, row offset, column offsets) of every batch of `strips`, in processing order."""
    rows, cols = grid.row_offsets, grid.col_offsets
    for ri in strips:
        for b0 in range(0, len(cols), batch_size):
            yield ri, rows[ri], cols[b0:b0 + batch_size]


def run_tiles(grid: TileGrid, scale: int, out_channels: int, source: Source, predict: Predict | None,
              sink: Sink, batch_size: int, feedback: Feedback, stats: RunStats, strips: range | None = None,
              stage: DeviceStage | None = None) -> None:
    """Drive the grid row by row; `sink` receives every output row exactly once, top to bottom.

    `strips` (consecutive indexes of grid.row_offsets; default all): only the rows these finish,
    grid.strip_rows(strips) times `scale`, go to `sink`, one process's share of a run split over
    several. The strip above them runs too, unsent, so that its overlap reaches their first rows as
    in the whole run: the same sums in the same order, so the same values bit for bit.

    `stage`: the tiles (as `source` gives them) run through it, and it blends them on its device
    (blending.DeviceStage; `predict` is not used); without one, `predict` runs them and the host
    blends (blending.HostBlend).

    Reading runs in this thread, between forward passes: a reader thread that overlaps
    them was measured slower on 2 cores (it preempts torch's own threads). On CUDA with a
    stage, the forward passes and the blending are queued on the GPU and run while this
    thread reads and stacks the next batch (the stage's two pinned input buffers), so there
    the reading is ahead of the model without a thread of its own.
    """
    t, s = grid.tile, scale
    height_out, width_out = grid.height * s, grid.width * s
    rows, cols = grid.row_offsets, grid.col_offsets
    strips = range(len(rows)) if strips is None else strips
    run = range(max(strips.start - 1, 0), strips.stop) if strips else range(0)
    shape = (out_channels, t * s, grid.padded_width * s, t * s, grid.overlap * s)
    blend = stage.begin(*shape) if stage else HostBlend(*shape)
    valid_strip = np.ones((t, grid.padded_width), bool)
    total, done = len(run) * len(cols), 0
    # reused from batch to batch: fresh arrays this size would each cost page faults
    batch = valid_batch = None

    def valid_in(n: int, c0: int, c1: int) -> np.ndarray:
        """The input's validity over output columns c0:c1 of the strip's first n output rows, at output scale
        (c0 and c1 need not fall on input pixels' edges: at scale 3 a 2048 px chunk does not)."""
        if s == 1:
            return valid_strip[:n, c0:c1]
        a, b = c0 // s, -(-c1 // s)
        return valid_strip[:n // s, a:b].repeat(s, axis=0).repeat(s, axis=1)[:, c0 - a * s:c1 - a * s]

    for ri, r, batch_cols in _batches(grid, batch_size, run):
        feedback.check_cancelled()
        x, valid, needs = source(r, r + t, batch_cols[0], batch_cols[-1] + t)
        top, bottom = ri > 0, ri < len(rows) - 1
        in_rows = min(t, grid.height - r)  # rows of this strip inside the raster
        c0, c1 = batch_cols[0], batch_cols[-1] + t
        if valid is not None:
            valid_strip[:, c0:c1] = valid
        wanted = valid if needs is None else needs if valid is None else valid & needs
        keep = [c for c in batch_cols
                if wanted is None or wanted[:in_rows, c - c0:c - c0 + min(t, grid.width - c)].any()]
        stats.tiles_skipped += len(batch_cols) - len(keep)
        if keep:
            if batch is None or batch.shape[1:] != (x.shape[0], t, t) or batch.dtype != x.dtype:
                batch = np.empty((batch_size, x.shape[0], t, t), x.dtype)
            stacked = np.stack([x[:, :, c - c0:c - c0 + t] for c in keep], out=batch[:len(keep)])
            start = time.perf_counter()
            if stage is None:
                assert predict is not None  # nosec B101  # run_tiles needs one or the other
                out: np.ndarray | torch.Tensor = predict(stacked)
            else:
                stacked_valid = None
                if valid is not None:
                    valid_batch = np.empty((batch_size, t, t), bool) if valid_batch is None else valid_batch
                    stacked_valid = np.stack([valid[:, c - c0:c - c0 + t] for c in keep], out=valid_batch[:len(keep)])
                out = stage.forward(stacked, stacked_valid)
            stats.forward_seconds += time.perf_counter() - start
            if tuple(out.shape) != (len(keep), out_channels, t * s, t * s):
                raise ModelFileError(
                    f"the model turned {t} px tiles into an array of shape {tuple(out.shape[1:])}, but its "
                    f"card promises {out_channels} bands of {t * s} px (scale {s}); the model file is inconsistent")
            stats.tiles_run += len(keep)
            stats.batch_sizes.append(len(keep))
            blend.add([(slice(c * s, (c + t) * s), y, (top, bottom, c > 0, c != cols[-1]))
                       for c, y in zip(keep, out, strict=True)])
        done += len(batch_cols)
        feedback.progress(done / total)
        feedback.status(f"tiles {done}/{total}")
        if batch_cols[-1] != cols[-1]:
            continue

        # the strip is done: rows [r, r + n) are final, no later tile reaches them
        n = min((grid.stride if bottom else in_rows) * s, height_out - r * s)
        if ri in strips:
            sink(n, blend.chunks(n, width_out, functools.partial(valid_in, n)))
        if bottom:
            blend.shift(grid.stride * s)
            valid_strip[:-grid.stride] = valid_strip[grid.stride:]
            valid_strip[-grid.stride:] = True


@dataclass(frozen=True)
class Output:
    """An output of a tile pass: its path, GeoTiffWriter's parameters for the whole raster, and how
    the rows (several processes' parts, or one) become the output (`join`, one of JOINS)."""

    path: str | os.PathLike
    params: dict[str, Any]
    join: str = "geotiff"

    def __post_init__(self) -> None:
        check_output_name(self.path, self.join)


@contextlib.contextmanager
def write_outputs(outputs: dict[str, Output], rows: tuple[int, int]) -> Iterator[dict[str, GeoTiffWriter]]:
    """Writers of `outputs` (by key) for the output rows [rows[0], rows[1]) this process makes, all of
    them in one process. On success every output is complete, checked and under its name; on any
    error none is.

    One process: each output is written beside its target and renamed into place (atomic_path).
    Several (torchrun): each process writes its rows into part files beside the targets (none when
    it has no rows); once every process has succeeded, process 0 joins the parts in row order into
    the targets; a failure in any process fails all of them; parts are deleted in every case."""
    share = distributed.current()
    if share.world == 1 and all(out.join == "geotiff" for out in outputs.values()):
        with contextlib.ExitStack() as stack:
            paths = {key: stack.enter_context(atomic_path(out.path)) for key, out in outputs.items()}
            yield stack.enter_context(_writers(outputs, paths))
        return
    with contextlib.ExitStack() as stack:
        stack.callback(distributed.barrier)  # last: no process returns before all have deleted their parts
        try:
            parts = {key: stack.enter_context(temporary_path(Path(out.path).with_suffix(".tif")))
                     for key, out in outputs.items() if rows[1] > rows[0]}
            with _writers(outputs, parts, rows) as writers:
                yield writers
        except BaseException:
            _failed(False)
            raise
        failed = _failed(True)
        if not failed:
            every = distributed.gather((rows, parts))
            try:
                if share.is_main:
                    _join(outputs, every)
            except BaseException:
                _failed(False)
                raise
            failed = _failed(True)
    if failed:
        raise OutputError(f"process{'es' if len(failed) > 1 else ''} {', '.join(map(str, failed))} of this run "
                          f"failed (see the error it printed); nothing was written")


@contextlib.contextmanager
def _writers(outputs: dict[str, Output], paths: dict[str, str],
             rows: tuple[int, int] | None = None) -> Iterator[dict[str, GeoTiffWriter]]:
    """Writers of the `outputs` at `paths` (of rows `rows`, see GeoTiffWriter): closed (checked,
    overviews built) on success, aborted on error."""
    writers: dict[str, GeoTiffWriter] = {}
    try:
        for key, path in paths.items():
            writers[key] = GeoTiffWriter(path, **outputs[key].params, rows=rows)
        yield writers
        for writer in writers.values():
            writer.close()
    except BaseException:
        for writer in writers.values():
            writer.abort()
        raise


def _join(outputs: dict[str, Output], every: list[tuple[tuple[int, int], dict[str, str]]]) -> None:
    """Each output from its parts (`every`: each process's rows and part paths by key, in row order)."""
    with rasterio.Env(**GDAL_ENV):
        tiffs = {key: out for key, out in outputs.items() if out.join == "geotiff"}
        if tiffs:
            _join_geotiff(tiffs, every)
        for key, out in outputs.items():
            parts = [(rows[0], rows[1], p[key]) for rows, p in every if key in p]
            if out.join == "vrt":
                _join_vrt(out, parts)
            elif out.join == "cog":
                _join_cog(out, parts)


def _join_geotiff(outputs: dict[str, Output], every) -> None:
    """Parts copied block row by block row into one GeoTIFF each, so memory grows with the width only."""
    with contextlib.ExitStack() as stack:
        paths = {key: stack.enter_context(atomic_path(out.path)) for key, out in outputs.items()}
        writers = stack.enter_context(_writers(outputs, paths))
        for key, writer in writers.items():
            for part in (p[key] for _, p in every if key in p):
                with rasterio.open(part) as src:
                    for r in range(0, src.height, BLOCK):
                        writer.write_rows(src.read(window=Window(0, r, src.width, min(BLOCK, src.height - r))))


def check_output_name(path: str | os.PathLike | None, join: str = "geotiff") -> None:
    """InputError for an unknown join, or a name that promises another format than the join writes."""
    if join not in JOINS:
        raise InputError(f"join must be one of {', '.join(JOINS)}, got {join!r}")
    if path is None:
        return
    name, vrt = Path(path).name, Path(path).suffix.lower() == ".vrt"
    if join == "vrt" and not vrt:
        raise InputError(f"{name}: with --join vrt the output is a VRT; name it .vrt")
    if vrt and join != "vrt":
        raise InputError(f"{name}: a .vrt output is written with --join vrt (the parts of the raster stay in a "
                         f"folder beside it); give that, or a .tif name")
    if join != "vrt":
        check_geotiff_name(path)


def _join_vrt(out: Output, parts: list[tuple[int, int, str]]) -> None:
    """The parts moved, as they are, into the folder <name>_parts beside the output, and the output a
    VRT naming them by relative paths (the pair can move together): nothing is copied."""
    target = Path(out.path)
    folder = target.with_name(target.stem + "_parts")
    names = [f"part-{i:03d}.tif" for i in range(len(parts))]
    with atomic_folder(folder) as tmp:
        for name, (_, _, part) in zip(names, parts, strict=True):
            os.replace(part, tmp / name)
    with atomic_path(target) as vrt:
        Path(vrt).write_text(vrt_xml(out.params, [(r0, r1, f"{folder.name}/{name}")
                                                  for name, (r0, r1, _) in zip(names, parts, strict=True)]))
        with rasterio.open(vrt) as check:  # GDAL reads it back, and every part with it
            check.checksum(check.count)
    for stale in folder.glob("part-*.tif"):  # left by an earlier run with more processes
        if stale.name not in names:
            stale.unlink()


def _join_cog(out: Output, parts: list[tuple[int, int, str]]) -> None:
    """The parts copied by GDAL's COG driver, through a VRT of them, into one cloud-optimized GeoTIFF
    (tiled, overviews inside and before the data, GDAL compressing on all cores)."""
    target = Path(out.path)
    params = out.params
    factors = overview_factors(params["width"], params["height"], params.get("overviews", "auto"))
    with temporary_path(target.with_suffix(".vrt")) as vrt, atomic_path(target, verify_geotiff) as tmp:
        Path(vrt).write_text(vrt_xml(params, [(r0, r1, os.path.basename(p)) for r0, r1, p in parts]))
        compression = output_compression()
        level = compression.get("zstd_level", compression.get("zlevel"))
        options = dict(COMPRESS=compression["compress"].upper(), LEVEL=level,
                       PREDICTOR="YES", BIGTIFF="IF_SAFER", NUM_THREADS="ALL_CPUS", BLOCKSIZE=BLOCK,
                       OVERVIEWS="AUTO" if factors else "NONE", **({"OVERVIEW_COUNT": len(factors)} if factors else {}),
                       RESAMPLING="NEAREST" if params.get("categorical") else "AVERAGE")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
            rasterio.shutil.copy(vrt, tmp, driver="COG", **options)


GDAL_TYPES = {"uint8": "Byte", "int8": "Int8", "uint16": "UInt16", "int16": "Int16", "uint32": "UInt32",
              "int32": "Int32", "float32": "Float32", "float64": "Float64"}


def vrt_xml(params: dict[str, Any], parts: list[tuple[int, int, str]]) -> str:
    """A GDAL VRT of the raster `params` describes (GeoTiffWriter's), mosaicked from `parts`: (first
    row, end row, path relative to the VRT) of files holding those rows at full width."""
    from xml.etree import ElementTree as ET  # nosec B405  # writes XML, parses none

    width, height = params["width"], params["height"]
    root = ET.Element("VRTDataset", rasterXSize=str(width), rasterYSize=str(height))
    if params.get("crs") is not None:
        ET.SubElement(root, "SRS").text = params["crs"].to_wkt()
    if params.get("transform") is not None:
        ET.SubElement(root, "GeoTransform").text = ", ".join(repr(float(v)) for v in params["transform"].to_gdal())
    meta = ET.SubElement(root, "Metadata")
    for key, value in {"AREA_OR_POINT": "Area", **(params.get("tags") or {})}.items():  # Area: as GeoTIFF's
        ET.SubElement(meta, "MDI", key=str(key)).text = str(value)
    names = params["band_names"]
    colours = colour_bands(names)
    for b, name in enumerate(names, start=1):
        band = ET.SubElement(root, "VRTRasterBand", dataType=GDAL_TYPES[str(np.dtype(params["dtype"]))],
                             band=str(b))
        ET.SubElement(band, "Description").text = name
        if params.get("nodata") is not None:
            ET.SubElement(band, "NoDataValue").text = repr(float(params["nodata"]))
        if colours:
            ET.SubElement(band, "ColorInterp").text = colours[b - 1].capitalize()
        for r0, r1, path in parts:
            source = ET.SubElement(band, "SimpleSource")
            ET.SubElement(source, "SourceFilename", relativeToVRT="1").text = path
            ET.SubElement(source, "SourceBand").text = str(b)
            ET.SubElement(source, "SrcRect", {"xOff": "0", "yOff": "0", "xSize": str(width), "ySize": str(r1 - r0)})
            ET.SubElement(source, "DstRect", {"xOff": "0", "yOff": str(r0), "xSize": str(width), "ySize": str(r1 - r0)})
    ET.indent(root)
    return ET.tostring(root, encoding="unicode") + "\n"


def _failed(ok: bool) -> list[int]:
    """Tell every process whether this one succeeded (`ok`); the ranks of those that did not."""
    return [rank for rank, good in enumerate(distributed.gather(ok)) if not good]


def run_totals(stats: RunStats) -> None:
    """Tiles run and skipped, summed over the processes of a run split over several (called by all)."""
    counts = distributed.gather((stats.tiles_run, stats.tiles_skipped))
    stats.tiles_run, stats.tiles_skipped = (sum(c) for c in zip(*counts, strict=True))


def torch_predictor(module: torch.nn.Module, device: torch.device) -> Predict:
    """Batched inference in eval and inference mode, on `device`. On CUDA the tiles go up and the
    outputs come down through pinned host buffers (reused from batch to batch), so both copies run
    at the bus's full speed; the array returned is then valid until the next call."""
    module.eval()
    if device.type == "cuda":
        return _pinned_predictor(module, device)

    def predict(batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            x = torch.from_numpy(batch).to(device)
            return module(x).float().cpu().numpy()

    return predict


def _pinned_predictor(module: torch.nn.Module, device: torch.device) -> Predict:
    buffers: dict[str, torch.Tensor] = {}

    def pinned(name: str, shape, dtype: torch.dtype) -> torch.Tensor:
        """The first shape[0] items of a pinned buffer kept for the largest batch so far: page-locked
        memory is slow to allocate and stays with the process, so one of each, not one per batch size."""
        buf = buffers.get(name)
        if buf is None or buf.dtype != dtype or buf.shape[1:] != tuple(shape[1:]) or buf.shape[0] < shape[0]:
            buf = buffers[name] = torch.empty(tuple(shape), dtype=dtype, pin_memory=True)
        return buf[:shape[0]]

    def predict(batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            up = pinned("in", batch.shape, torch.from_numpy(batch[:0]).dtype)
            up.numpy()[...] = batch
            y = module(up.to(device, non_blocking=True)).float()
            down = pinned("out", y.shape, torch.float32)
            down.copy_(y, non_blocking=True)
            torch.cuda.current_stream(device).synchronize()
            return down.numpy()

    return predict


def check_tile_size(module: torch.nn.Module, tile: int) -> None:
    multiple = getattr(module, "multiple", 1)
    if tile % multiple:
        raise InputError(f"tile size {tile} does not suit this model: it must be a multiple of {multiple}")


def output_transform(src, scale: int) -> Affine | None:
    """The input's geotransform with pixels `scale` times smaller; None for an input without georeferencing."""
    if not is_georeferenced(src):
        return None
    return src.transform * Affine.scale(1 / scale)


# how far (as a factor either way) the input's ground pixel size may be from the model's before a warning
RESOLUTION_TOLERANCE = 2.0


def warn_if_other_resolution(src, card: ModelCard, feedback: Feedback) -> None:
    """A warning when the raster's pixels are far larger or smaller on the ground than those the model
    learnt from (both must be known)."""
    if card.resolution_m is None:
        return
    res = ground_resolution(src.crs, src.transform, src.height)
    if res is None or 1 / RESOLUTION_TOLERANCE <= res / card.resolution_m <= RESOLUTION_TOLERANCE:
        return
    want = f"{card.resolution_m:.3g} m"
    feedback.info(f"warning: the pixels of {os.path.basename(src.name)} are about {res:.3g} m on the ground, but "
                  f"the model learnt from {want} imagery, so its output may be poor; resample the raster to about "
                  f"{want} (QGIS: Warp (Reproject) with that resolution; GDAL: gdalwarp -tr), or use a model "
                  f"trained on imagery like it")


def warn_if_not_georeferenced(src, feedback: Feedback) -> None:
    if not is_georeferenced(src):
        feedback.info(f"warning: {src.name} has no georeferencing (no CRS, geotransform or GCPs); the output has "
                      f"none either and matches the input pixel for pixel")


def input_scaling(card: ModelCard, normalize: str, samples: np.ndarray, bands: list[int], feedback: Feedback,
                  what: str = "pixels") -> BandScaling:
    """The stretch of the input bands into the model's range: the card's (normalize="model"; with a
    clear warning when the raster's values are not those the model was trained on) or one fitted on
    `samples` (bands, n), valid `what` of this raster's `bands` (normalize="scene")."""
    if normalize == "scene":
        if samples.shape[1] < 100:
            raise InputError(f"only {samples.shape[1]} valid {what} to fit a stretch on; use the model's own "
                             f"normalisation (NORMALIZE model / --normalize model)")
        scaling = fit_percentiles(samples)
        low, high = (", ".join(f"{v:.6g}" for v in values) for values in (scaling.low, scaling.high))
        feedback.info(f"scene stretch from {samples.shape[1]} {what}: low {low}, high {high}")
        return scaling
    names = [f"{b} (the model's {name})" for b, name in zip(bands, card.inputs.names, strict=True)]
    mismatch = range_mismatch(samples, card.inputs.scaling, names)
    if mismatch:
        feedback.info("warning: this raster's values are not those the model was trained on, so its output will "
                      "likely have nothing to do with the scene:\n  " + "\n  ".join(mismatch) + "\n  Fix: stretch "
                      "the bands by this raster's own values (NORMALIZE scene: in qgis_process NORMALIZE=1, on the "
                      "command line --normalize scene), or use a model trained on imagery of this kind")
    return card.inputs.scaling


def check_normalize(normalize: str) -> None:
    if normalize not in NORMALIZE:
        raise InputError(f"normalize must be one of {', '.join(NORMALIZE)}, got {normalize!r}")


@dataclass
class ApplyResult:
    output: Path
    stats: RunStats
    width: int
    height: int
    legend: dict[str, list[int]] = field(default_factory=dict)  # the model's map colours, if it draws a map


def apply_model(model: LoadedModel | str | os.PathLike, input_path: str | os.PathLike,
                output_path: str | os.PathLike, options: TileOptions | None = None,
                feedback: Feedback | None = None,
                tasks: tuple[str, ...] = ("image-to-image", "translate"),
                postprocess: Callable[[ModelCard], Callable[[np.ndarray], np.ndarray]] | None = None,
                normalize: str = "model") -> ApplyResult:
    """Run an image-to-image model over a raster of any size; write a GeoTIFF
    with the input's CRS and (scaled) geotransform.

    `postprocess(card)` may return a function applied to each block of output
    values (bands, rows, cols), in raster units, before they are cast and written.
    `normalize`: "model" stretches the input bands as in training (the card's scaling),
    "scene" by a percentile stretch fitted on this raster's valid pixels.
    """
    options = options or TileOptions()
    feedback = feedback or Feedback()
    check_normalize(normalize)
    setup = prepare_apply(model, options, tasks, inputs=[input_path], outputs=[output_path])
    model, device, tile, overlap = setup.model, setup.device, setup.tile, setup.overlap
    card: ModelCard = model.card

    started = time.perf_counter()
    stats = RunStats()
    with rasterio.Env(**GDAL_ENV), open_raster(input_path) as src, contextlib.ExitStack() as stack:
        bands = select_bands(src, options.bands, card.inputs.names)
        if normalize == "model":
            check_input_dtype(card, {src.dtypes[b - 1] for b in bands})
        # a stretch fitted on this raster needs a dense sample; the check of the model's own a sparse one
        sample = sample_pixels(src, bands, max_pixels=None if normalize == "scene" else RANGE_CHECK_PIXELS)
        in_scaling = input_scaling(card, normalize, sample, bands, feedback)
        grid = TileGrid(src.height, src.width, tile, overlap)
        # each block of the input read once, each block row decoded by a thread per core (a handle each)
        reader = stack.enter_context(rolling_reader(input_path, src, bands, tile))
        out_scaling = card.outputs.scaling
        out_dtype = card.outputs.dtype or "float32"
        nodata = output_nodata(reader, out_dtype)
        finish = postprocess(card) if postprocess else None
        module, channels = model.module, card.outputs.count
        scores = class_scores(module)
        if scores:  # tiles blend as class probabilities, then each pixel takes its best class's colour
            palette = module.get_buffer("palette")
            module, channels, finish = ClassProbabilities(module), scores, draw_classes(palette, out_scaling)

        stage = None
        if on_device(options.blend, device):  # raw band values go up, finished rows of the output type come down
            stage = DeviceStage(module, device, in_scaling, card.inputs.clip, out_scaling,
                                None if finish else out_dtype)

        def source(r0, r1, c0, c1):
            data, valid = reader.read(r0, r1, c0, c1)
            if stage is not None:
                return data, valid, None
            x = np.empty(data.shape, np.float32)
            in_parts(lambda lo, hi: in_scaling.to_model(data[:, lo:hi], clip=card.inputs.clip, out=x[:, lo:hi]),
                     data.shape[1])
            if valid is not None:
                x[:, ~valid] = 0.0  # invalid pixels enter the model as mid-grey, not as garbage
            return x, valid, None

        warn_if_not_georeferenced(src, feedback)
        warn_if_other_resolution(src, card, feedback)
        feedback.info(f"{src.width} x {src.height} px, bands {bands}, {len(grid)} tiles of {tile} px "
                      f"(overlap {overlap}), batch {options.batch_size}, device {device}"
                      f"{', blending there' if stage is not None and device.type != 'cpu' else ''}")
        strips = distributed.current().part(len(grid.row_offsets))  # all of them in one process
        first, last = grid.strip_rows(strips)
        output = Output(output_path, dict(
            width=src.width * card.scale, height=src.height * card.scale, dtype=out_dtype, crs=src.crs,
            transform=output_transform(src, card.scale), nodata=nodata, band_names=card.outputs.names,
            overviews=options.overviews, categorical=finish is not None), options.join)
        with write_outputs({"output": output}, (first * card.scale, last * card.scale)) as writers:

            def sink(n, chunks):
                rows = writers["output"].next_rows(n)  # (bands, n, width) in the output dtype, written on return
                for values, valid, c0 in chunks:
                    out = rows[:, :, c0:c0 + values.shape[2]]
                    if finish:
                        values = finish(values if scores else out_scaling.from_model(values))
                        cast_to_dtype(values, out_dtype, out=out)
                    elif stage is not None:  # band values of the output type (or rounded float32) already
                        np.copyto(out, values, casting="unsafe")
                    else:  # plain scaling and casting: row by row, so in parts
                        in_parts(functools.partial(_scale_rows, out_scaling, values, out_dtype, out), n)
                    if nodata is not None:
                        _mark_nodata(out, valid, nodata)

            predict = None if stage is not None else torch_predictor(module, device)
            run_tiles(grid, card.scale, channels, source, predict, sink, options.batch_size, feedback,
                      stats, strips, stage)
    run_totals(stats)
    stats.seconds = time.perf_counter() - started
    return ApplyResult(Path(output_path), stats, src.width * card.scale, src.height * card.scale, dict(card.legend))


def class_scores(module: torch.nn.Module) -> int:
    """The number of classes a model scores (a UNet with `classes`), else 0."""
    classes = getattr(module, "classes", 0)
    return classes if isinstance(classes, int) else 0


class ClassProbabilities(torch.nn.Module):
    """A model of class scores as the tile pipeline runs it: it gives the classes' probabilities, which
    blend across tile overlaps as colours cannot (a blend of two colours may be nearest a third)."""

    def __init__(self, net: torch.nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.net(x, logits=True).float(), dim=1)


def draw_classes(palette: torch.Tensor, scaling: BandScaling) -> Callable[[np.ndarray], np.ndarray]:
    """Blended class probabilities (K, rows, cols) -> the colour of the most probable class, in band values."""
    colours = scaling.from_model(palette.detach().float().cpu().numpy().T.copy()).T.copy()  # (K, bands)

    def draw(probabilities: np.ndarray) -> np.ndarray:
        return colours[probabilities.argmax(axis=0)].transpose(2, 0, 1)

    return draw


def _scale_rows(scaling, values: np.ndarray, dtype: str, out: np.ndarray, lo: int, hi: int) -> None:
    """Rows lo:hi of model output `values` (a float array of our own: overwritten) into `out`, in raster units
    and the output dtype."""
    rows = values[:, lo:hi]
    cast_to_dtype(scaling.from_model(rows, out=rows), dtype, out=out[:, lo:hi], overwrite=True)


def _mark_nodata(out: np.ndarray, valid: np.ndarray, nodata) -> None:
    """Invalid pixels get `nodata`; valid pixels that happen to equal it are nudged
    to the next value, so no real pixel is read back as nodata."""
    if out.dtype.kind != "f":
        step = -1 if nodata == np.iinfo(out.dtype).max else 1
        out[out == nodata] = nodata + step
    out[:, ~valid] = nodata


def check_input_dtype(card: ModelCard, actual: set[str]) -> None:
    """InputError unless the selected bands (of data types `actual`) are of the dtype the
    model's stretch was fitted on (a card without one takes any)."""
    expected = card.inputs.dtype
    if expected and actual != {expected}:
        raise InputError(
            f"the model was trained on {expected} bands but the selected bands are {'/'.join(sorted(actual))}; "
            f"its scaling would not fit this data: stretch the bands by this raster's own values instead "
            f"(NORMALIZE scene: in qgis_process NORMALIZE=1, on the command line --normalize scene), use "
            f"imagery of the same kind, or retrain on it"
        )


@dataclass
class ApplySetup:
    """What every apply-algorithm settles before reading a pixel."""

    model: LoadedModel
    device: torch.device
    tile: int
    overlap: int


def prepare_apply(model: LoadedModel | str | os.PathLike, options: TileOptions, tasks: tuple[str, ...],
                  inputs: list, outputs: list) -> ApplySetup:
    """Device, model (loaded for one of `tasks`), tile size and overlap, checked; outputs never overwrite inputs."""
    if options.batch_size < 1:
        raise InputError(f"batch size must be at least 1, got {options.batch_size}")
    check_not_same_file([*inputs, None if isinstance(model, LoadedModel) else model], outputs)
    for output in outputs:
        check_output_name(output, options.join)
    device = resolve_device(options.device)
    if not isinstance(model, LoadedModel):
        model = load_model(model, device=device, tasks=tasks)
    else:
        model.module.to(device)
    tile = options.tile_size or model.card.tile_size
    overlap = model.card.overlap if options.overlap is None else options.overlap
    check_tile_size(model.module, tile)
    return ApplySetup(model, device, tile, overlap)
