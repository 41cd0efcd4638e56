"""Cloud inpainting over a raster of any size: cloudy pixels filled with plausible
ground by a mask-aware model, every other pixel written back exactly as read.

Data flow: a cloud mask on the input's grid (a mask layer, a QA band with a bit
expression, or detection; optionally dilated; see masks.py) -> one streaming
pre-pass counting cloud cover (and, with normalize="scene", sampling clear pixels
for a percentile stretch fitted on this scene) -> the shared tile pipeline, which
runs only tiles holding cloud and blends them -> a sink that takes the input's
own pixels wherever the mask is clear or the input is nodata, and the model's
values (cast to the input's dtype) only under the mask. The mask used is written
as a second GeoTIFF (1 cloud, 0 clear, 255 nodata).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio

from .. import distributed
from ..card import ModelCard
from ..errors import InputError
from ..modelfile import LoadedModel, default_model
from ..models.inpaint_unet import model_input
from ..pipeline import (
    Output,
    RunStats,
    TileOptions,
    check_input_dtype,
    check_normalize,
    input_scaling,
    output_transform,
    prepare_apply,
    run_tiles,
    run_totals,
    torch_predictor,
    warn_if_not_georeferenced,
    write_outputs,
)
from ..progress import Feedback
from ..raster import (
    BLOCK,
    GDAL_ENV,
    BlockReader,
    open_raster,
    rolling_reader,
    sample_pixels,
    select_bands,
)
from ..scaling import BandScaling, cast_to_dtype
from ..windows import TileGrid, reflect_indices
from .detect import parse_band_roles
from .masks import NO_MASK, Grid, open_mask
from .qa import QAExpression
from .references import ReferenceOptions, ReferenceStack

MASK_NODATA = 255
SCENE_SAMPLES = 200_000
# above this share of cloud among valid pixels, the fill is a best effort and said so
BEST_EFFORT = 0.8


@dataclass
class MaskOptions:
    mask: str | None = None  # raster (non-zero = cloud) or polygon file (GeoPackage, GeoJSON)
    mask_layer: str | None = None  # layer of a multi-layer GeoPackage
    qa: str | None = None  # raster holding the QA band; None with qa_band: a band of the input
    qa_band: int | None = None
    qa_expression: str | None = None
    detect: bool = False
    detect_bands: str | None = None  # band roles for detection, e.g. "blue=1,green=2,red=3,nir=4"
    dilate: int = 0


@dataclass
class InpaintResult:
    output: Path
    mask: Path | None
    stats: RunStats
    cloud_fraction: float
    best_effort: bool
    width: int
    height: int


class PaddedReader:
    """A mask (rows, cols) or reference (bands, rows, cols) source read with reflection
    past the raster's edges, like the bands."""

    def __init__(self, source, height: int, width: int):
        self.source, self.height, self.width = source, height, width

    def read(self, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
        rows = reflect_indices(r0, r1, self.height)
        cols = reflect_indices(c0, c1, self.width)
        lo_r, lo_c = int(rows.min()), int(cols.min())
        block = self.source.read(lo_r, int(rows.max()) + 1, lo_c, int(cols.max()) + 1)
        if rows[0] == lo_r and cols[0] == lo_c and block.shape[-2:] == (rows.size, cols.size):
            return block
        return block[(Ellipsis,) + np.ix_(rows - lo_r, cols - lo_c)]


class StripCache:
    """The mask of the current strip of tiles, read once, the padded raster wide: the
    tiles of a strip and the sink's finished rows (which lie in that strip) slice it,
    so a mask (a warp, a QA test, detection, a dilation) is computed once per strip."""

    def __init__(self, mask: PaddedReader, width: int):  # a mask or the reference
        self.mask, self.width = mask, width
        self.r0, self.rows = 0, np.zeros((0, width), bool)

    def read(self, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
        if not (self.r0 <= r0 and r1 <= self.r0 + self.rows.shape[-2]):
            self.r0, self.rows = r0, self.mask.read(r0, r1, 0, self.width)
        return self.rows[..., r0 - self.r0:r1 - self.r0, c0:c1]


def _survey(src, reader: BlockReader, cloud, feedback: Feedback, sample: bool):
    """Streaming pass in block rows: (cloud pixels, valid pixels, clear samples or None)."""
    n_cloud = n_valid = 0
    step = max(1, src.width * src.height // SCENE_SAMPLES)
    samples = []
    for r0 in range(0, src.height, BLOCK):
        feedback.check_cancelled()
        r1 = min(src.height, r0 + BLOCK)
        c = cloud.read(r0, r1, 0, src.width)
        valid = None
        if reader.has_invalid or sample:
            data, valid = reader.read(r0, r1, 0, src.width)
        valid = np.ones(c.shape, bool) if valid is None else valid
        n_cloud += int((c & valid).sum())
        n_valid += int(valid.sum())
        if sample:
            idx = np.flatnonzero(valid & ~c)
            idx = idx[(idx + r0 * src.width) % step == 0]  # every step-th pixel of the scene
            samples.append(data.reshape(data.shape[0], -1)[:, idx])
    clear = np.concatenate(samples, axis=1) if sample else None
    return n_cloud, n_valid, clear


def inpaint(input_path: str | os.PathLike, output_path: str | os.PathLike,
            model: LoadedModel | str | os.PathLike | None = None, masks: MaskOptions | None = None,
            options: TileOptions | None = None, feedback: Feedback | None = None,
            output_mask: str | os.PathLike | None = None, normalize: str = "model",
            reference: str | os.PathLike | Sequence[str | os.PathLike] | ReferenceOptions | None = None,
            reference_bands: list[int] | None = None, output_source: str | os.PathLike | None = None,
            output_uncertainty: str | os.PathLike | None = None) -> InpaintResult:
    """Fill the cloudy pixels of `input_path`; write a GeoTIFF with the input's grid,
    dtype and nodata, equal to the input bit for bit outside the mask.

    `reference`: one or more images of the same place on other dates (paths, or
    `ReferenceOptions` with each one's cloud mask, QA band or detection, and dates); any
    grid; bands `reference_bands`, default the input's selected band numbers, in the same
    order. Each cloudy pixel is filled from the references clear there, each matched to
    this date locally (`fills.combine_references`), and by the model where none is.

    `output_source`: a uint8 GeoTIFF saying what filled each pixel (codes at MODEL_CODE).
    `output_uncertainty`: a float32 GeoTIFF, per band, the half-width of the 80 %
    interval of each filled value (0 where the input's own pixel is kept, NaN at nodata)."""
    masks = masks or MaskOptions()
    options = options or TileOptions()
    feedback = feedback or Feedback()
    check_normalize(normalize)
    if masks.dilate < 0:
        raise InputError(f"dilation must be 0 or more pixels, got {masks.dilate}")
    if options.blend == "device":
        raise InputError("inpainting blends its tiles on the host (its fills mix the model with reference images "
                         "there); leave --blend at auto or host")
    if masks.detect_bands and not masks.detect:
        raise InputError("detection bands were given but detection is off; turn detection on (DETECT / --detect) "
                         "or leave the detection bands (DETECT_BANDS / --detect-bands) out")
    if not (masks.mask or masks.qa_expression or masks.detect):
        raise InputError(NO_MASK)
    if masks.qa_expression:
        QAExpression(masks.qa_expression)  # a typo fails here, before any work
    if masks.detect_bands:
        parse_band_roles(masks.detect_bands)  # a typo fails here, before any work
    if reference_bands and not reference:
        raise InputError("reference bands were given without a reference image; give the reference (REFERENCE / "
                         "--reference) or leave the reference bands out")
    refs = ReferenceOptions.of(reference, reference_bands)
    if refs is not None:
        refs.check()
    ref_inputs = (refs.paths + [m for m in refs.masks or [] if m]) if refs else []
    setup = prepare_apply(model or default_model("inpaint"), options, ("inpaint",),
                          inputs=[input_path, *ref_inputs, masks.mask, masks.qa],
                          outputs=[output_path, output_mask, output_source, output_uncertainty])
    model, device, tile, overlap = setup.model, setup.device, setup.tile, setup.overlap
    card: ModelCard = model.card

    started = time.perf_counter()
    stats = RunStats()
    with rasterio.Env(**GDAL_ENV), open_raster(input_path) as src:
        bands = select_bands(src, options.bands, card.inputs.names)
        dtypes = {src.dtypes[b - 1] for b in bands}
        if len(dtypes) > 1:
            raise InputError(f"the selected bands mix data types ({', '.join(sorted(dtypes))}); "
                             f"select bands of one type")
        dtype = dtypes.pop()
        if normalize == "model":
            check_input_dtype(card, {dtype})
        reader = BlockReader(src, bands)
        grid = TileGrid(src.height, src.width, tile, overlap)
        with open_mask(Grid.of(src), mask_path=masks.mask, mask_layer=masks.mask_layer, qa_path=masks.qa,
                       qa_band=masks.qa_band, qa_expression=masks.qa_expression, detect=masks.detect,
                       input_path=str(input_path), detect_bands=masks.detect_bands,
                       dilate=masks.dilate) as mask_source:
            cloud = PaddedReader(mask_source, src.height, src.width)
            n_cloud, n_valid, clear = _survey(src, reader, cloud, feedback, sample=normalize == "scene")
            if n_valid == 0:
                raise InputError(f"{input_path} holds no valid pixel (all nodata) in bands {bands}; nothing to fill")
            fraction = n_cloud / n_valid
            warn_if_not_georeferenced(src, feedback)
            feedback.info(f"{src.width} x {src.height} px, bands {bands}: cloud cover {fraction:.1%} of valid pixels")
            if n_cloud == n_valid:
                raise InputError("every valid pixel is under the cloud mask, so there is no clear ground to fill "
                                 "from; check the mask (e.g. the QA expression or the dilation) or use a scene "
                                 "with clear areas")
            best_effort = fraction > BEST_EFFORT
            if best_effort:
                feedback.info(f"warning: {fraction:.0%} of the scene is cloud; the fill is a best effort with "
                              f"little clear context, check it before use")
            if normalize == "model":  # the values the model will see, compared with its training's
                clear = sample_pixels(src, bands, exclude=cloud.read)
            scaling = input_scaling(card, normalize, clear.astype(np.float64), bands, feedback, "clear pixels")
            ref_source = None
            if refs is not None:
                ref_source = ReferenceStack(refs, bands, Grid.of(src), input_path, feedback)
                names = ", ".join(Path(p).name for p in ref_source.paths)
                feedback.info(f"filling from {len(refs.paths)} reference date(s) ({names}), bands "
                              f"{ref_source.bands}, {refs.combine}; the model fills only where no reference is clear")
            outputs = FillOutputs(output_path, output_mask, output_source, output_uncertainty)
            # the tile pass: each input block read once, each strip's mask computed once
            with rolling_reader(input_path, src, bands, tile) as rolling, \
                    (contextlib.closing(ref_source) if ref_source else contextlib.nullcontext()):
                strip_ref = (StripCache(PaddedReader(ref_source, src.height, src.width), grid.padded_width)
                             if ref_source else None)
                _run(src, rolling, StripCache(cloud, grid.padded_width), grid, card, model, device, scaling,
                     bands, dtype, outputs, options, feedback, stats, fraction, best_effort, strip_ref,
                     refs.combine if refs else "weighted")
    run_totals(stats)
    stats.seconds = time.perf_counter() - started
    feedback.info(f"{stats.tiles_run} tiles filled, {stats.tiles_skipped} cloud-free tiles copied")
    return InpaintResult(Path(output_path), Path(output_mask) if output_mask else None, stats, fraction,
                         best_effort, src.width, src.height)


@dataclass
class FillOutputs:
    output: str | os.PathLike
    mask: str | os.PathLike | None = None
    source: str | os.PathLike | None = None
    uncertainty: str | os.PathLike | None = None


def _output(path, src, dtype, nodata, names, options: TileOptions, tags, categorical=False) -> Output:
    return Output(path, dict(width=src.width, height=src.height, dtype=dtype, crs=src.crs,
                             transform=output_transform(src, 1), nodata=nodata, band_names=names,
                             overviews=options.overviews, categorical=categorical, tags=tags), options.join)


def _run(src, reader, cloud, grid, card, model, device, scaling: BandScaling, bands, dtype, outputs: FillOutputs,
         options: TileOptions, feedback, stats, fraction, best_effort, reference=None, combine="weighted") -> None:
    clip = card.inputs.clip
    names = [src.descriptions[b - 1] or name for b, name in zip(bands, card.inputs.names, strict=True)]
    n_bands = len(bands)
    n_refs = 0 if reference is None else len(reference.mask.source)
    # source codes of the shares (references nearest date first, then the model): references numbered as given
    codes = np.array([i + 1 for i in (reference.mask.source.order if reference is not None else [])] + [MODEL_CODE],
                     np.uint8)
    # the full fill (references, uncertainty, source) or the model alone
    full = reference is not None or outputs.source is not None or outputs.uncertainty is not None

    def source(r0, r1, c0, c1):
        data, valid = reader.read(r0, r1, c0, c1)
        c = cloud.read(r0, r1, c0, c1)
        holes = c if valid is None else c | ~valid  # nodata is unknown to the model too
        x = model_input(scaling.to_model(data, clip=clip), holes)
        if full:  # + the unclipped scaled bands, then per reference its scaled bands (0 where not clear) and validity
            parts = [x, scaling.to_model(data) * ~holes]
            if reference is not None:
                for ref in reference.read(r0, r1, c0, c1):
                    ok = np.isfinite(ref).all(axis=0)
                    parts += [scaling.to_model(np.where(ok, ref, 0)) * ok, ok[None].astype(np.float32)]
            x = np.concatenate(parts, axis=0)
        return x, valid, c

    tags = {"SATGEN_CLOUD_FRACTION": f"{fraction:.6f}", "SATGEN_BEST_EFFORT": str(best_effort).lower(),
            "SATGEN_MODEL": card.name}
    if reference is not None:
        tags["SATGEN_REFERENCES"] = "; ".join(Path(p).name for p in reference.mask.source.paths)
    specs = {"output": _output(outputs.output, src, dtype, src.nodata, names, options, tags)}
    if outputs.mask:
        specs["mask"] = _output(outputs.mask, src, "uint8", MASK_NODATA, ["cloud"], options, tags, True)
    if outputs.source:
        specs["source"] = _output(outputs.source, src, "uint8", MASK_NODATA, ["fill source"], options, tags, True)
    if outputs.uncertainty:
        specs["uncertainty"] = _output(outputs.uncertainty, src, "float32", float("nan"),
                                       [f"{n} 80% half-width" for n in names], options, tags)
    strips = distributed.current().part(len(grid.row_offsets))  # all of them in one process
    first, last = grid.strip_rows(strips)
    with write_outputs(specs, (first, last)) as writers:
        row = [first]

        def sink(n, chunks):
            r = row[0]
            rows = {k: w.next_rows(n) for k, w in writers.items()}
            for values, covered, c0 in chunks:
                c1 = c0 + values.shape[2]
                raw, valid = reader.read(r, r + n, c0, c1)  # rows of the strip just read: no I/O
                c = cloud.read(r, r + n, c0, c1)
                fill = c & covered if valid is None else c & covered & valid
                out = rows["output"][:, :, c0:c1]
                out[...] = raw  # the input's own pixels wherever nothing is filled: bit-exact
                if fill.any():
                    out[:, fill] = cast_to_dtype(scaling.from_model(values[:n_bands, fill]), dtype)
                if "mask" in rows:
                    m = c.astype(np.uint8)
                    if valid is not None:
                        m[~valid] = MASK_NODATA
                    rows["mask"][0, :, c0:c1] = m
                if "source" in rows:
                    code = np.zeros(c.shape, np.uint8)
                    shares = values[2 * n_bands:]  # K references, then the model
                    code[fill] = codes[shares[:, fill].argmax(0)]
                    if valid is not None:
                        code[~valid] = MASK_NODATA
                    rows["source"][0, :, c0:c1] = code
                if "uncertainty" in rows:
                    u = rows["uncertainty"][:, :, c0:c1]
                    u[...] = 0.0
                    u[:, fill] = scaling.spread_from_model(values[n_bands:2 * n_bands, fill])
                    if valid is not None:
                        u[:, ~valid] = np.nan
            row[0] += n

        if full:
            predictor = fill_predictor(model.module, device, n_bands, n_refs, combine, clip)
            channels = 2 * n_bands + n_refs + 1
        else:
            predictor, channels = torch_predictor(model.module, device), card.outputs.count
        run_tiles(grid, 1, channels, source, predictor, sink, options.batch_size, feedback, stats, strips)


# the source layer: 0 the input's own pixel, 1, 2, ... the reference (numbered as given) with the most weight,
# MODEL_CODE the model, MASK_NODATA nodata
MODEL_CODE = 100


def fill_predictor(module, device, n_bands: int, n_refs: int, combine: str = "weighted", clip: float | None = None):
    """Batches of (bands + mask, unclipped bands, K x (reference bands, reference validity)) ->
    (fill, 80 % half-width, K + 1 shares): the references' combined fill where any is clear, the model's
    elsewhere (the model runs only for batches that need it, and sees the pixels filled from references
    as known, so a gap between them is filled from both sides); half-widths in the model's units."""
    import torch

    from .fills import FILL_SIGMA_SCALE, REFERENCE_SIGMA_SCALE, Z80, combine_references, local_spread

    module.eval()

    def predict(batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            x = torch.from_numpy(batch).to(device)
            model_in = x[:, :n_bands + 1]
            hole = model_in[:, -1:]
            known = 1 - hole
            values = x[:, n_bands + 1:2 * n_bands + 1]
            n, _, h, w = x.shape
            model_share = hole.clone()
            filled = values.new_zeros((n, n_bands, h, w))
            half = values.new_zeros((n, n_bands, h, w))
            shares = values.new_zeros((n, n_refs, h, w))
            if n_refs:
                refs = x[:, 2 * n_bands + 1:].reshape(n, n_refs, n_bands + 1, h, w)
                ref_fill, variance, shares, any_ok = combine_references(
                    values.double(), known.double(), refs[:, :, :n_bands].double(), refs[:, :, n_bands:].double(),
                    combine=combine)
                filled = ref_fill.to(values.dtype)
                half = (Z80 * REFERENCE_SIGMA_SCALE * variance.sqrt()).to(values.dtype)
                shares = shares.to(values.dtype) * any_ok.to(values.dtype)
                model_share = hole * (1 - any_ok.to(values.dtype))
            if bool(model_share.amax() > 0):
                if n_refs:  # the references' fill counts as known for the model
                    taken = hole - model_share
                    ref_values = filled if clip is None else filled.clamp(-clip, clip)
                    bands = model_in[:, :n_bands] * (1 - taken) + ref_values * taken
                    model_in = torch.cat([bands * (1 - model_share), model_share], 1)
                by_model = module(model_in).float()
                spread = Z80 * FILL_SIGMA_SCALE * local_spread(values, known).sqrt()
                filled = torch.where(model_share > 0.5, by_model, filled)
                half = torch.where(model_share > 0.5, spread, half)
            return torch.cat([filled, half, shares, model_share], 1).float().cpu().numpy()

    return predict
