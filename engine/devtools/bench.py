"""`python -m engine bench` (`make bench`): measures the tile pipeline with a U-Net of
realistic size on real imagery -- efficiency, peak memory against raster size, seams,
throughput -- and writes them with their goals to reports/bench.json.
"""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, TypedDict

# torch, rasterio and numpy are imported inside the functions: `python -m engine --help`
# imports this module and must stay fast.

DEFAULT_INPUT = "data/samples/s2_virginia_10m.tif"
DEFAULT_OUT = "reports/bench.json"
DEFAULT_WORK = "data/bench"  # git-ignored: cached big inputs, model files, outputs
SEED = 0
SEAM_MODEL = "resources/models/translate_s2_osm.satgen"
RSS_BUDGET_S = 600.0  # above this estimated time the RSS runs use a narrower U-Net


class BenchSetup(TypedDict):
    """What a bench run measures on: the full run's or --quick's."""

    ngf: int
    sizes: tuple[int, ...]
    crop: int | None
    efficiency_crop: int | None
    repeats: int
    null_side: int  # side of the raster of the null-model run


FULL: BenchSetup = dict(ngf=32, sizes=(2048, 8192, 16384), crop=None, efficiency_crop=None, repeats=5,
                        null_side=4096)
# --quick: a smoke run in seconds (tiny model, small rasters); its figures mean nothing
QUICK: BenchSetup = dict(ngf=4, sizes=(256, 512, 1024), crop=512, efficiency_crop=512, repeats=1,
                         null_side=512)


def _seam_vs_crop(p):
    """Blending "clearly better" than crop stitching: its seam excess over the whole-image
    output at the same lines at most half the crop's. None when crop stitching shows no
    seam of its own (excess < 0.02): then this model cannot tell the two apart."""
    crop_excess = p["seam_boundary_ratio_crop"] - p["seam_boundary_ratio_whole"]
    if crop_excess < 0.02:
        return None
    return p["seam_boundary_ratio"] - p["seam_boundary_ratio_whole"] <= 0.5 * crop_excess


GOALS = {
    "efficiency": (">= 0.90 (median of the runs)", lambda p: p["efficiency"] >= 0.90),
    "null_model_vs_gdal": (">= 0.8", lambda p: p["null_model_vs_gdal"] >= 0.8),
    "peak_rss_ratio": ("<= 1.2 (largest / smallest raster)", lambda p: p["peak_rss_ratio"] <= 1.2),
    "seam_boundary_ratio": ("<= 1.05", lambda p: p["seam_boundary_ratio"] <= 1.05),
    "seam_vs_crop": ("seam excess <= crop's / 2", _seam_vs_crop),
}


def add_arguments(p) -> None:
    p.add_argument("--model", help="benchmark this SatGen model file (tile/overlap from its card) instead of a "
                   "random-init U-Net")
    p.add_argument("--input", default=DEFAULT_INPUT, help=f"real raster to run on (default {DEFAULT_INPUT})")
    p.add_argument("--bands", help="1-based input bands, e.g. 3,2,1 (default: matched to the model)")
    p.add_argument("--batch-size", type=int, default=4, help="tiles per forward pass (default 4)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    p.add_argument("--sizes", help="square raster sizes for the memory runs (default 2048,8192,16384)")
    p.add_argument("--seam-model", default=SEAM_MODEL,
                   help="trained model for the seam measures (a random-init model shows no seams to measure; "
                        f"default {SEAM_MODEL}, else the bench model)")
    p.add_argument("--quick", action="store_true", help="fast smoke run: tiny model, small rasters")
    p.add_argument("--only", choices=["efficiency", "engine-process", "null-model", "scale", "gpu"],
                   help="measure only this part (efficiency: the end-to-end/forward runs and the profile, in "
                        "a minute; engine-process: the cost of running the engine as a subprocess, as the plugin "
                        "does with SatGen's environment; scale: training and apply with 1 and 2 processes under "
                        "torchrun; gpu: the GPU goals alone, on CUDA: efficiency, MP/s on a large raster, null "
                        "model against a GDAL copy on all cores); its report goes to WORK/bench_<part>.json "
                        "unless --out is given")
    p.add_argument("--engine-python", default=sys.executable,
                   help="interpreter of the engine subprocess for engine-process (default: this one)")
    p.add_argument("--repeats", type=int, help="efficiency runs, best of which counts (default 5; --quick 1)")
    p.add_argument("--out", help=f"JSON report (default {DEFAULT_OUT})")
    p.add_argument("--work", default=DEFAULT_WORK, help=f"folder for cached inputs and outputs ({DEFAULT_WORK})")


# ---------------------------------------------------------------- the model


def make_bench_model(path: Path, input_path: str, ngf: int, seed: int = SEED, depth: int = 8) -> Path:
    """A random-init pix2pix U-Net (depth 8, as the translation model) saved as a real
    SatGen model file, inputs scaled from the raster's 2nd/98th percentiles."""
    import numpy as np
    import rasterio
    import torch

    from ..card import Bands, ModelCard
    from ..modelfile import save_model
    from ..models.unet import UNet
    from ..scaling import fit_percentiles

    with rasterio.open(input_path) as src:
        step = max(1, int(math.sqrt(src.width * src.height / 250_000)))  # ~250k samples
        sample = src.read(out_shape=(src.count, src.height // step, src.width // step))
        names = [d or f"B{i + 1}" for i, d in enumerate(src.descriptions)]
        dtype = src.dtypes[0]
    scaling = fit_percentiles(sample.reshape(sample.shape[0], -1).astype(np.float64))
    torch.manual_seed(seed)
    params: dict[str, Any] = dict(in_channels=len(names), out_channels=3, ngf=ngf, depth=depth)
    card = ModelCard(
        task="image-to-image", architecture="unet", params=params,
        inputs=Bands(names=names, low=list(scaling.low), high=list(scaling.high), dtype=dtype, clip=3.0),
        outputs=Bands(names=["red", "green", "blue"], low=[0.0] * 3, high=[255.0] * 3, dtype="uint8"),
        tile_size=256, overlap=32, name=f"bench U-Net ngf={ngf}",
        description=f"random-init weights (seed {seed}) for benchmarking only",
    )
    module = UNet(**params)
    save_model(path, module, card)
    with open(path, "rb") as f:
        if f.read(1) == b"\x80":
            # a header length of 128 mod 256 starts the file with the byte pickles start
            # with, and modelfile's pickle check refuses it; 8 more bytes of card (safetensors
            # pads its header to multiples of 8) avoid that
            card.description += " (bench)"
            save_model(path, module, card)
    return path


def describe_model(loaded, random_init: bool) -> dict:
    card = loaded.card
    return {"path": str(loaded.path), "architecture": card.architecture, "params": card.params,
            "parameters": sum(p.numel() for p in loaded.module.parameters()),
            "tile": card.tile_size, "overlap": card.overlap, "scale": card.scale,
            "inputs": card.inputs.names, "outputs": card.outputs.names, "output_dtype": card.outputs.dtype,
            "weights": f"random init, seed {SEED}" if random_init else "from the model file"}


# ---------------------------------------------------------------- efficiency and throughput


def pipeline_tiles(loaded, input_path: str, bands, tile: int, overlap: int):
    """The model-space tiles apply_model feeds the model, in its order: same grid,
    same reader (reflection padding), same scaling."""
    import numpy as np
    import rasterio

    from ..raster import GDAL_ENV, BlockReader, select_bands
    from ..windows import TileGrid

    card = loaded.card
    with rasterio.Env(**GDAL_ENV), rasterio.open(input_path) as src:
        reader = BlockReader(src, select_bands(src, bands, card.inputs.names))
        grid = TileGrid(src.height, src.width, tile, overlap)
        for r in grid.row_offsets:
            for c in grid.col_offsets:
                data, _ = reader.read(r, r + tile, c, c + tile)
                yield np.ascontiguousarray(card.inputs.scaling.to_model(data, clip=card.inputs.clip))


def measure_efficiency(loaded, input_path: str, work: Path, options, repeats: int) -> dict:
    """End-to-end apply_model time against the pure forward time of the same module on
    the same tiles in the same batch sizes; both warm, same threads, interleaved in pairs.
    `efficiency` is the median of the pairs' ratios (what a user meets); `efficiency_best` the
    best pure time over the best end-to-end time (other processes can only ever add time, and
    with two cores one busy neighbour slows torch's two threads several-fold)."""
    import numpy as np
    import rasterio
    import torch

    from ..pipeline import apply_model

    output = work / "efficiency_out.tif"
    # warm-up: the first forward pass of each batch shape builds oneDNN primitives; that
    # one-off cost would otherwise be charged to whichever measurement runs first
    stats = apply_model(loaded, input_path, output, options).stats
    tiles = list(pipeline_tiles(loaded, input_path, options.bands, *_tiling(loaded, options)))
    device = next(loaded.module.parameters()).device
    batches, i = [], 0
    for n in stats.batch_sizes:  # skipped (nodata) tiles would shift this; the bench rasters have none
        batches.append(torch.from_numpy(np.stack(tiles[i:i + n])).to(device))
        i += n
    del tiles

    runs, forward = [], []
    load = _OtherLoad()
    for _ in range(repeats):
        runs.append(apply_model(loaded, input_path, output, options).stats)
        with torch.inference_mode():
            _sync()
            start = time.perf_counter()
            for x in batches:
                loaded.module(x)
            _sync()
            forward.append(time.perf_counter() - start)
    output.unlink()

    end_to_end = min(s.seconds for s in runs)
    pure = min(forward)
    ratios = sorted(f / s.seconds for f, s in zip(forward, runs, strict=True))
    median = (ratios[(len(ratios) - 1) // 2] + ratios[len(ratios) // 2]) / 2
    with rasterio.open(input_path) as src:
        megapixels = src.width * src.height / 1e6
        size = [src.width, src.height]
    return {"input": str(input_path), "input_size": size, "tiles": stats.tiles_run,
            "batch_sizes": _runs_of(stats.batch_sizes),
            "forward_seconds": round(pure, 3), "end_to_end_seconds": round(end_to_end, 3),
            "pipeline_forward_seconds": round(min(s.forward_seconds for s in runs), 3),
            "efficiency": round(median, 4), "efficiency_best": round(pure / end_to_end, 4),
            "runs_efficiency": [round(f / s.seconds, 4) for f, s in zip(forward, runs, strict=True)],
            "mp_per_s": round(megapixels / end_to_end, 3),
            "seconds_per_tile": end_to_end / stats.tiles_run, "repeats": repeats,
            "runs_end_to_end_seconds": [round(s.seconds, 3) for s in runs],
            "runs_pipeline_forward_seconds": [round(s.forward_seconds, 3) for s in runs],
            "runs_forward_seconds": [round(f, 3) for f in forward],
            "other_processes_cpu": load.cores()}


PROFILED = {  # (module file, function) -> label, in report order
    ("pipeline.py", "apply_model"): "total",
    ("pipeline.py", "predict"): "forward (torch_predictor)",
    ("pipeline.py", "source"): "source: read + normalize",
    ("raster.py", "read"): "  read (RollingReader.read)",
    ("scaling.py", "to_model"): "  normalize (to_model, main thread's part)",
    ("pipeline.py", "run_tiles"): "stacking + bookkeeping (run_tiles self time)",
    ("blending.py", "blend"): "blend (HostBlend.add, main thread's part)",
    ("pipeline.py", "sink"): "sink: divide + denormalize + cast + write",
    ("blending.py", "divide"): "  divide (HostBlend.chunks, main thread's part)",
    ("scaling.py", "from_model"): "  denormalize (from_model, main thread's part)",
    ("scaling.py", "cast_to_dtype"): "  cast (cast_to_dtype, main thread's part)",
    ("raster.py", "_flush"): "  write (GeoTiffWriter, whole block rows)",
    ("raster.py", "close"): "writer close",
}


def profile_pipeline(loaded, input_path: str, work: Path, options) -> dict:
    """Where apply_model spends its time, by cProfile: once in wall-clock seconds, once in
    CPU seconds of the main thread (which other processes cannot inflate; the forward
    pass's second torch thread is not in it). The pipeline makes few Python calls per
    tile, so the profiler's own overhead is small. Only the main thread is profiled:
    of the work done in parts on helper threads, one per core (normalize, blend, divide,
    denormalize + cast, decoding the input) the wall-clock figures show what the main thread waited for."""
    import cProfile
    import pstats

    from ..pipeline import apply_model

    output = work / "profile_out.tif"
    result = {}
    for name, timer in (("wall_seconds", time.perf_counter), ("main_thread_cpu_seconds", time.thread_time)):
        profiler = cProfile.Profile(timer)
        profiler.enable()
        apply_model(loaded, input_path, output, options)
        profiler.disable()
        found: dict[tuple[str, str], float] = {}
        for (file, _line, func), (_cc, _nc, tottime, cumtime, _callers) in pstats.Stats(profiler).stats.items():  # type: ignore[attr-defined]
            key = (os.path.basename(file), func)
            if key in PROFILED:
                # run_tiles' own time is the blending (acc += y * w), tile stacking and row
                # normalizing, all inline; everything else counts with what it calls
                # (RollingReader.read and BlockReader.read, which it calls only for windows too
                # tall for its buffer, share a key: added up)
                found[key] = found.get(key, 0.0) + (tottime if func == "run_tiles" else cumtime)
        result[name] = {label: round(found[key], 3) for key, label in PROFILED.items() if key in found}
    output.unlink()
    return result


# ---------------------------------------------------------------- peak memory


def make_canvases(source: str, targets: list) -> None:
    for target, size in targets:
        make_canvas(source, target, size)


def make_canvas(source: str, target: str, size: int) -> None:
    """Write a size x size GeoTIFF of real imagery, `source` mirrored across it, one row
    of blocks at a time, so neither this process nor the file's size matter for memory."""
    import numpy as np
    import rasterio
    from rasterio.windows import Window

    from ..windows import reflect_indices

    with rasterio.open(source) as src:
        data = src.read()
        profile = dict(driver="GTiff", width=size, height=size, count=src.count, dtype=src.dtypes[0],
                       crs=src.crs, transform=src.transform, nodata=src.nodata, tiled=True,
                       blockxsize=256, blockysize=256, compress="deflate", predictor=2, BIGTIFF="IF_SAFER")
        descriptions = src.descriptions
    cols = reflect_indices(0, size, data.shape[2])
    tmp = target + ".part"
    with rasterio.Env(GDAL_NUM_THREADS="ALL_CPUS"), rasterio.open(tmp, "w", **profile) as dst:
        for i, d in enumerate(descriptions, start=1):
            if d:
                dst.set_band_description(i, d)
        for r0 in range(0, size, 256):
            r1 = min(size, r0 + 256)
            strip = data[:, reflect_indices(r0, r1, data.shape[1])][:, :, cols]
            dst.write(np.ascontiguousarray(strip), window=Window(0, r0, size, r1 - r0))
    os.replace(tmp, target)


def rss_child(model: str, input_path: str, output: str, tile: int, overlap: int, batch: int,
              device: str, bands: list[int] | None) -> None:
    """Runs in a fresh process: apply_model on `input_path`; prints its peak RSS as JSON.

    The peak is VmHWM, the high-water mark of this process's own memory since exec:
    Linux's ru_maxrss is not reset by exec and starts at the parent's RSS at fork, so a
    child of this (large) bench process would report the parent's size."""
    import resource

    from ..device import resolve_device
    from ..modelfile import load_model
    from ..pipeline import TileOptions, apply_model

    loaded = load_model(model, device=resolve_device(device))
    before = _vm_hwm_mb()  # peak so far: interpreter + torch + model, before any tile
    options = TileOptions(tile_size=tile, overlap=overlap, batch_size=batch, device=device, bands=bands)
    result = apply_model(loaded, input_path, output, options)
    os.remove(output)
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux
    print(json.dumps({"peak_rss_mb": _vm_hwm_mb() or round(maxrss, 1), "peak_rss_before_run_mb": before,
                      "ru_maxrss_mb": round(maxrss, 1), "seconds": round(result.stats.seconds, 2),
                      "tiles": result.stats.tiles_run}))


def measure_rss(model: Path, input_path: str, work: Path, sizes, options, tile: int, overlap: int) -> dict:
    """Peak RSS of a whole process running apply_model on square rasters of each size,
    one fresh process per size; the inputs are made (once, cached) by other processes."""
    work = work.resolve()
    canvases = {size: work / f"canvas_{Path(input_path).stem}_{size}.tif" for size in sizes}
    # written under a temporary name, so an existing one is complete
    missing = [[str(path), size] for size, path in canvases.items() if not path.exists()]
    if missing:
        _log(f"  making {', '.join(p for p, _ in missing)}")
        _call_child("make_canvases", str(Path(input_path).resolve()), missing)
    runs = {}
    for size, canvas in canvases.items():
        _log(f"  apply_model on {size} x {size} px in a fresh process")
        runs[str(size)] = _call_child("rss_child", str(Path(model).resolve()), str(canvas),
                                      str(work / f"rss_out_{size}.tif"), tile, overlap, options.batch_size,
                                      options.device, options.bands)
    return runs


# ---------------------------------------------------------------- seams


def stitch_centre_crop(x, tile: int, overlap: int, predict, scale: int = 1, batch_size: int = 4):
    """Plain tiling without blending: the pipeline's grid and reflection padding, but
    each output pixel taken from the one tile whose centre part holds it (the overlap
    split in half between neighbours; edge tiles keep their outer edges). x: (C, H, W)."""
    import numpy as np

    from ..windows import TileGrid, reflect_indices

    _c, h, w = x.shape
    grid = TileGrid(h, w, tile, overlap)
    rows, cols = grid.row_offsets, grid.col_offsets
    s, lo, hi = scale, overlap // 2, overlap - overlap // 2
    out = None
    places = [(r, c) for r in rows for c in cols]
    for b0 in range(0, len(places), batch_size):
        batch = places[b0:b0 + batch_size]
        tiles = np.stack([x[:, reflect_indices(r, r + tile, h)][:, :, reflect_indices(c, c + tile, w)]
                          for r, c in batch])
        for (r, c), y in zip(batch, predict(tiles), strict=True):
            if out is None:
                out = np.zeros((y.shape[0], h * s, w * s), y.dtype)
            r0 = r + lo if r > 0 else 0
            r1 = min(h, r + tile - hi if r != rows[-1] else r + tile)
            c0 = c + lo if c > 0 else 0
            c1 = min(w, c + tile - hi if c != cols[-1] else c + tile)
            out[:, r0 * s:r1 * s, c0 * s:c1 * s] = y[:, (r0 - r) * s:(r1 - r) * s, (c0 - c) * s:(c1 - c) * s]
    return out


def measure_seams(loaded, input_path: str, work: Path, options, max_crop: int | None) -> dict:
    """On the largest square crop of the real raster that one forward pass takes: the
    blended pipeline output, centre-crop stitching, and a whole-image forward pass."""
    import rasterio
    import torch
    from rasterio.windows import Window

    from ..metrics import cut_lines, psnr, seam_ratio
    from ..pipeline import apply_model, torch_predictor
    from ..raster import select_bands
    from ..scaling import cast_to_dtype
    from ..windows import TileGrid

    card, module = loaded.card, loaded.module
    tile, overlap = _tiling(loaded, options)
    device = next(module.parameters()).device
    multiple = math.lcm(getattr(module, "multiple", 1), tile)
    with rasterio.open(input_path) as src:
        side = min(src.height, src.width, max_crop or 1 << 30) // multiple * multiple
        if side == 0:
            raise ValueError(f"{input_path} is smaller than one {multiple} px tile")
        window = Window((src.width - side) // 2, (src.height - side) // 2, side, side)
        bands = select_bands(src, options.bands, card.inputs.names)
        data = src.read(window=window)
        profile = dict(src.profile, width=side, height=side, transform=src.window_transform(window))
    crop, output = work / f"seam_crop_{side}.tif", work / "seam_out.tif"
    with rasterio.open(crop, "w", **profile) as dst:
        dst.write(data)

    def to_uint(y):  # model space -> the card's output dtype, as the pipeline's sink does
        return cast_to_dtype(card.outputs.scaling.from_model(y), card.outputs.dtype or "float32")

    blended_result = apply_model(loaded, crop, output, options)
    with rasterio.open(output) as dst:
        blended = dst.read()
    output.unlink()
    x = card.inputs.scaling.to_model(data[[b - 1 for b in bands]], clip=card.inputs.clip)
    predict = torch_predictor(module, device)
    cropped = to_uint(stitch_centre_crop(x, tile, overlap, predict, card.scale, options.batch_size))
    with torch.inference_mode():
        whole = to_uint(module(torch.from_numpy(x[None]).to(device)).float().cpu().numpy()[0])

    grid = TileGrid(side, side, tile, overlap)
    size = side * card.scale
    lines = (cut_lines(grid.row_offsets, overlap, card.scale, size),
             cut_lines(grid.col_offsets, overlap, card.scale, size))
    return {"input": str(input_path), "crop": [int(window.col_off), int(window.row_off), side, side],
            "tiles": blended_result.stats.tiles_run, "lines": lines[1],
            "seam_boundary_ratio": round(seam_ratio(blended, *lines), 4),
            "seam_boundary_ratio_crop": round(seam_ratio(cropped, *lines), 4),
            # the same lines in the whole-image output: what "no seam" looks like for this model
            "seam_boundary_ratio_whole": round(seam_ratio(whole, *lines), 4),
            "seam_psnr_db": _finite(psnr(blended, whole)),
            "seam_psnr_db_crop": _finite(psnr(cropped, whole))}


# ---------------------------------------------------------------- the report


def measure_engine_process(input_path: str, work: Path, python: str, sides=(256, 2048), repeats: int = 3) -> dict:
    """satgen:translate's engine call run in this process (imports and model warm, as in QGIS's Python),
    in a new worker subprocess per run (start, imports, model load, run) and in one worker kept
    between runs, as the plugin keeps it (model load, run); medians of `repeats` runs per raster side."""
    import statistics
    import subprocess  # nosec B404

    from .. import ROOT, calls
    from ..progress import Feedback

    code = f"import sys; sys.path.append({str(ROOT)!r}); from engine.worker import main; sys.exit(main())"

    def serve(process, request) -> None:
        stdin, stdout = process.stdin, process.stdout
        assert stdin is not None and stdout is not None  # nosec B101  # PIPE was asked for
        stdin.write(json.dumps(request) + "\n")
        stdin.flush()
        for line in stdout:
            answer = json.loads(line)
            if "result" in answer or "error" in answer:
                if "error" in answer:
                    raise RuntimeError(f"engine subprocess failed: {answer}")
                return

    def worker():
        return subprocess.Popen([python, "-I", "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,  # nosec
                                stderr=subprocess.DEVNULL, text=True)

    out: dict = {"python": python, "runs": repeats}
    for side in sides:
        crop = _crop(input_path, work, side)

        def request(name, crop=crop):
            return calls.Call("translate", crop, str(work / name), None, calls.Obj("pipeline:TileOptions"),
                              calls.FEEDBACK).request()

        calls.run(request("warm.tif"), Feedback())
        inside, fresh, kept = [], [], []
        keeper = worker()
        serve(keeper, request("kept_warm.tif"))  # its first run pays the start, as a fresh one does
        for i in range(repeats):
            t = time.perf_counter()
            calls.run(request(f"in_{i}.tif"), Feedback())
            inside.append(time.perf_counter() - t)
            t = time.perf_counter()
            with worker() as process:  # stdin stays open while it runs: its end would cancel the run
                serve(process, request(f"sub_{i}.tif"))
                process.stdin.close()
            fresh.append(time.perf_counter() - t)
            t = time.perf_counter()
            serve(keeper, request(f"kept_{i}.tif"))
            kept.append(time.perf_counter() - t)
        keeper.stdin.close()
        keeper.wait()
        a, b, c = (statistics.median(v) for v in (inside, fresh, kept))
        out[str(side)] = {"in_process_s": round(a, 3), "subprocess_s": round(b, 3), "kept_worker_s": round(c, 3),
                          "ratio": round(b / a, 2), "overhead_s": round(b - a, 2),
                          "kept_overhead_s": round(c - a, 2)}
        _log(f"  {side} px: in-process {a:.2f} s, new subprocess {b:.2f} s, kept subprocess {c:.2f} s")
    return out


def measure_null_model(input_path: str, work: Path, side: int = 4096, repeats: int = 3, device: str = "cpu",
                       all_cores: bool = False, blend: str = "auto") -> dict:
    """The pipeline's own cost: apply_model with a model whose forward costs nothing (a real model file,
    its network swapped here for one that passes the first three input bands through) on a `side` px
    4-band raster, against gdal_translate reading the same file and writing the same kind of GeoTIFF
    (3 bands uint8, scaled, tiled 256, ZSTD level 1), alternating, medians of `repeats`. `all_cores`:
    gdal_translate compresses with all cores (GDAL's NUM_THREADS=ALL_CPUS), as the GPU goal asks."""
    import shutil
    import statistics
    import subprocess  # nosec B404

    import torch

    from ..modelfile import load_model
    from ..pipeline import TileOptions, apply_model
    from ..raster import BLOCK, output_compression

    canvas = str(work / f"canvas_{side}.tif")
    if not Path(canvas).exists():
        make_canvas(input_path, canvas, side)
    model = make_bench_model(work / "bench_null_unet.satgen", canvas, ngf=1, depth=2)
    loaded = load_model(model)

    class PassThrough(torch.nn.Module):
        def forward(self, x):
            return x[:, :3]

    loaded.module = PassThrough()
    gdal = shutil.which("gdal_translate")
    lo, hi = loaded.card.inputs.low, loaded.card.inputs.high
    options = {**{k.upper(): v for k, v in output_compression().items()}, "PREDICTOR": 2, "TILED": "YES",
               "BLOCKXSIZE": BLOCK, "BLOCKYSIZE": BLOCK}  # as GeoTiffWriter writes a uint8 output
    if all_cores:
        options["NUM_THREADS"] = "ALL_CPUS"
    command = [gdal or "gdal_translate", "-q", "-ot", "Byte", "-b", "1", "-b", "2", "-b", "3"]
    if all_cores:
        command += ["--config", "GDAL_NUM_THREADS", "ALL_CPUS"]
    for band in range(3):
        command += [f"-scale_{band + 1}", f"{lo[band]:g}", f"{hi[band]:g}", "0", "255"]
    for key, value in options.items():
        command += ["-co", f"{key}={value}"]
    ours, theirs = [], []
    for i in range(repeats):
        out = work / f"null_{i}.tif"
        t = time.perf_counter()
        apply_model(loaded, canvas, out, TileOptions(batch_size=4, device=device, overviews="no", blend=blend))
        ours.append(time.perf_counter() - t)
        copy = work / f"gdal_{i}.tif"
        copy.unlink(missing_ok=True)
        t = time.perf_counter()
        if gdal:
            subprocess.run([*command, canvas, str(copy)], check=True)  # nosec B603
        else:
            gdal_copy(canvas, str(copy), list(zip(lo[:3], hi[:3], strict=True)), options, all_cores)
        theirs.append(time.perf_counter() - t)
        _log(f"  run {i + 1}: pipeline {ours[-1]:.2f} s, gdal_translate {theirs[-1]:.2f} s")
    mp = side * side / 1e6
    a, b = statistics.median(ours), statistics.median(theirs)
    return {"side": side, "runs": repeats, "device": device, "blend": blend, "gdal_all_cores": all_cores,
            "pipeline_s": [round(x, 3) for x in ours],
            "gdal_translate_s": [round(x, 3) for x in theirs], "pipeline_mp_per_s": round(mp / a, 2),
            "gdal_mp_per_s": round(mp / b, 2), "null_model_vs_gdal": round(b / a, 3),
            "gdal_command": " ".join(command[1:]) + " IN OUT" if gdal else
            "gdal_translate is not installed: the same copy through GDAL in this process (bench.gdal_copy: a VRT "
            "scaling bands 1-3 to Byte, copied by rasterio.shutil.copy)", "creation_options": options}


def gdal_copy(source: str, target: str, ranges: list[tuple[float, float]], options: dict, all_cores: bool) -> None:
    """What `gdal_translate -ot Byte -b 1 -b 2 -b 3 -scale_i LO HI 0 255 -co ...` does, in this process, for
    machines without GDAL's programs (the GPU machine has rasterio's GDAL, not gdal-bin): a VRT of the
    first bands of `source`, each scaled from (LO, HI) to 0-255 as Byte, copied into a GeoTIFF by GDAL.
    For the bench's canvases, which have no nodata (gdal_translate would carry a nodata value over)."""
    from xml.sax.saxutils import escape  # nosec B406  # escapes text for XML we write, parses none

    import rasterio
    import rasterio.shutil

    from ..pipeline import GDAL_TYPES

    with rasterio.open(source) as src:
        width, height, gdal_type = src.width, src.height, GDAL_TYPES[src.dtypes[0]]
        block_rows, block_cols = src.block_shapes[0]
        transform = ", ".join(repr(float(v)) for v in src.transform.to_gdal())
        srs = src.crs.to_wkt() if src.crs else ""
    bands = []
    for b, (lo, hi) in enumerate(ranges, start=1):
        ratio = 255.0 / (float(hi) - float(lo))
        bands.append(f"""<VRTRasterBand dataType="Byte" band="{b}"><ComplexSource>
<SourceFilename relativeToVRT="0">{escape(source)}</SourceFilename><SourceBand>{b}</SourceBand>
<SourceProperties RasterXSize="{width}" RasterYSize="{height}" DataType="{gdal_type}" BlockXSize="{block_cols}"
BlockYSize="{block_rows}"/><ScaleOffset>{-float(lo) * ratio!r}</ScaleOffset><ScaleRatio>{ratio!r}</ScaleRatio>
</ComplexSource></VRTRasterBand>""")
    vrt = f"""<VRTDataset rasterXSize="{width}" rasterYSize="{height}"><SRS>{escape(srs)}</SRS>
<GeoTransform>{transform}</GeoTransform>{"".join(bands)}</VRTDataset>"""
    env = {"GDAL_NUM_THREADS": "ALL_CPUS"} if all_cores else {}
    with rasterio.Env(**env):
        rasterio.shutil.copy(vrt, target, driver="GTiff", **options)


def main(args) -> int:
    import torch

    from ..device import resolve_device
    from ..modelfile import load_model
    from ..pipeline import TileOptions

    started = time.perf_counter()
    if args.only == "null-model":
        work = Path(args.work)
        work.mkdir(parents=True, exist_ok=True)
        _log("null model: the pipeline with a near-null U-Net against gdal_translate on the same raster")
        result = measure_null_model(args.input, work)
        result.update(command="python -m engine bench " + " ".join(sys.argv[2:]),
                      date=time.strftime("%Y-%m-%dT%H:%M:%S%z"), cpu=_cpu_name(), cpu_count=os.cpu_count())
        out = Path(args.out or work / "bench_null-model.json")
        out.write_text(json.dumps(result, indent=1) + "\n")
        print(f"null_model_vs_gdal {result['null_model_vs_gdal']} (pipeline {result['pipeline_mp_per_s']} MP/s, "
              f"gdal_translate {result['gdal_mp_per_s']} MP/s); wrote {out}")
        return 0
    if args.only == "scale":
        work = Path(args.work)
        work.mkdir(parents=True, exist_ok=True)
        result = _scale(args.input, work, args.quick)
        result.update(command="python -m engine bench " + " ".join(sys.argv[2:]),
                      date=time.strftime("%Y-%m-%dT%H:%M:%S%z"), cpu=_cpu_name())
        out = Path(args.out or work / "bench_scale.json")
        out.write_text(json.dumps(result, indent=1) + "\n")
        print(f"training {result['train_images_per_s_1']} -> {result['train_images_per_s_2']} images/s, inference "
              f"{result['infer_mp_per_s_1']} -> {result['infer_mp_per_s_2']} MP/s with 1 -> 2 processes "
              f"(identical output: {result['infer_2_identical_to_1']}); wrote {out}")
        return 0
    if args.only == "gpu":
        return _gpu_only(args, started)
    if args.only == "engine-process":
        work = Path(args.work)
        work.mkdir(parents=True, exist_ok=True)
        _log(f"engine-process: translate in this process and as a worker subprocess of {args.engine_python}")
        result = measure_engine_process(args.input, work, args.engine_python)
        result.update(command="python -m engine bench " + " ".join(sys.argv[2:]),
                      date=time.strftime("%Y-%m-%dT%H:%M:%S%z"), cpu=_cpu_name(), cpu_count=os.cpu_count())
        out = Path(args.out or work / "bench_engine-process.json")
        out.write_text(json.dumps(result, indent=1) + "\n")
        print(f"wrote {out}")
        return 0
    setup = QUICK if args.quick else FULL
    sizes = tuple(int(s) for s in args.sizes.split(",")) if args.sizes else setup["sizes"]
    bands = [int(b) for b in args.bands.split(",")] if args.bands else None
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)

    model_path = Path(args.model) if args.model else make_bench_model(
        work / f"bench_unet_ngf{setup['ngf']}.satgen", args.input, setup["ngf"])
    loaded = load_model(model_path, device=resolve_device(args.device))
    options = TileOptions(batch_size=args.batch_size, device=args.device, bands=bands)
    tile, overlap = _tiling(loaded, options)
    options.tile_size, options.overlap = tile, overlap
    device = next(loaded.module.parameters()).device

    efficiency_input = args.input
    if setup["efficiency_crop"]:
        efficiency_input = _crop(args.input, work, setup["efficiency_crop"])
    repeats = args.repeats or setup["repeats"]
    _log(f"efficiency: apply_model on {efficiency_input} ({repeats} runs) and pure forward passes")
    eff = measure_efficiency(loaded, efficiency_input, work, options, repeats)
    _log(f"  efficiency {eff['efficiency']:.3f}; profiling one more run")
    profile = profile_pipeline(loaded, efficiency_input, work, options)
    machine = {"cpu_count": os.cpu_count(), "cpu": _cpu_name(), "python": platform.python_version(),
               "torch": torch.__version__, "threads": torch.get_num_threads(), "device": str(device)}
    command = "python -m engine bench " + " ".join(sys.argv[2:])
    if args.only == "efficiency":
        report = {"machine": machine, "model": describe_model(loaded, random_init=not args.model),
                  "options": {"tile": tile, "overlap": overlap, "batch_size": options.batch_size,
                              "quick": args.quick},
                  "pipeline": {k: eff[k] for k in ("efficiency", "forward_seconds", "end_to_end_seconds", "tiles",
                                                   "mp_per_s")},
                  "goals": {"efficiency": {"goal": GOALS["efficiency"][0],
                                           "met": bool(GOALS["efficiency"][1](eff))}},
                  "details": {"efficiency": eff, "profile": profile},
                  "bench_seconds": round(time.perf_counter() - started, 1), "command": command,
                  "date": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        out = Path(args.out or work / "bench_efficiency.json")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=1) + "\n")
        other = eff.get("other_processes_cpu")
        print(f"efficiency {eff['efficiency']:.3f} (goal {GOALS['efficiency'][0]}): forward "
              f"{eff['forward_seconds']:.2f} s / end-to-end {eff['end_to_end_seconds']:.2f} s, {eff['tiles']} tiles; "
              f"other processes used {other} cores")
        print(f"wrote {out} ({report['bench_seconds']:.0f} s)")
        return 0

    seam_loaded, seam_options = loaded, options
    if args.seam_model and Path(args.seam_model).is_file() and not args.quick:
        seam_loaded = load_model(args.seam_model, device=resolve_device(args.device))
        seam_options = TileOptions(batch_size=args.batch_size, device=args.device, bands=bands)
        seam_options.tile_size, seam_options.overlap = _tiling(seam_loaded, seam_options)
    _log("null model: the pipeline with a forward that costs nothing against gdal_translate")
    null = measure_null_model(args.input, work, side=setup["null_side"], repeats=1 if args.quick else 3)
    _log(f"  null_model_vs_gdal {null['null_model_vs_gdal']}")
    _log(f"seams: blended, centre-crop and whole-image outputs of {seam_loaded.path}")
    seams = measure_seams(seam_loaded, args.input, work, seam_options, setup["crop"])
    seams["model"] = str(seam_loaded.path)

    # the memory runs: estimate from the measured time per tile; a narrower U-Net of the
    # same architecture when too slow (the pipeline's memory does not depend on the width)
    from ..windows import TileGrid

    tiles = sum(len(TileGrid(n, n, tile, overlap)) for n in sizes)
    estimate = tiles * eff["seconds_per_tile"]
    rss_model, rss_note = model_path, "the bench model"
    if estimate > RSS_BUDGET_S and loaded.card.architecture == "unet":
        narrow = max(4, loaded.card.params.get("ngf", 64) // 4)
        rss_model = make_bench_model(work / f"bench_unet_ngf{narrow}.satgen", args.input, narrow)
        rss_note = (f"U-Net ngf={narrow} (same architecture, narrower): the bench model would take about "
                    f"{estimate / 60:.0f} min; the pipeline's memory does not depend on the model width")
    _log(f"peak RSS: sizes {sizes}, {tiles} tiles, about {estimate / 60:.1f} min with the bench model; "
         f"using {rss_note}")
    rss = measure_rss(rss_model, args.input, work, sizes, options, tile, overlap)
    peaks = {k: v["peak_rss_mb"] for k, v in rss.items()}
    ratio = peaks[str(sizes[-1])] / peaks[str(sizes[0])]

    pipeline = {
        "efficiency": eff["efficiency"], "forward_seconds": eff["forward_seconds"],
        "end_to_end_seconds": eff["end_to_end_seconds"], "tiles": eff["tiles"], "mp_per_s": eff["mp_per_s"],
        "peak_rss_mb": peaks, f"peak_rss_ratio_{sizes[-1]}_{sizes[0]}": round(ratio, 3),
        "seam_boundary_ratio": seams["seam_boundary_ratio"],
        "seam_boundary_ratio_crop": seams["seam_boundary_ratio_crop"],
        "seam_psnr_db": seams["seam_psnr_db"],
        "null_model_vs_gdal": null["null_model_vs_gdal"], "null_model_mp_per_s": null["pipeline_mp_per_s"],
        "gdal_translate_mp_per_s": null["gdal_mp_per_s"],
    }
    checks = dict(pipeline, peak_rss_ratio=ratio, seam_boundary_ratio_whole=seams["seam_boundary_ratio_whole"])
    goals = {}
    for name, (text, test) in GOALS.items():
        met = test(checks)
        goals[name] = {"goal": text, "met": None if met is None else bool(met)}
    if goals["seam_vs_crop"]["met"] is None:
        goals["seam_vs_crop"]["note"] = ("not measurable with this model: centre-crop stitching shows no seam "
                                         "either (see details.seams); run with a trained --model")
    gpu = None
    if device.type == "cuda":  # the GPU goals: efficiency, MP/s, null model against a GDAL copy on all cores
        _log("GPU: null model on CUDA against gdal_translate on all cores")
        gpu_null = measure_null_model(args.input, work, side=setup["null_side"], repeats=1 if args.quick else 3,
                                      device=str(device), all_cores=True)
        gpu = {"device": torch.cuda.get_device_name(device), "efficiency": eff["efficiency"],
               "mp_per_s": eff["mp_per_s"], "null_model_vs_gdal_all_cores": gpu_null["null_model_vs_gdal"],
               "null_model": gpu_null}
    scale = None if args.quick else _scale(args.input, work, quick=False)
    report = {
        "machine": machine,
        "model": describe_model(loaded, random_init=not args.model),
        "options": {"tile": tile, "overlap": overlap, "batch_size": options.batch_size, "quick": args.quick},
        "pipeline": pipeline,
        **({"gpu": gpu} if gpu else {}),
        **({"scale": scale} if scale else {}),
        "goals": goals,
        "details": {"efficiency": eff, "profile": profile, "seams": seams, "null_model": null,
                    "rss_model": {"path": str(rss_model), "note": rss_note}, "rss_runs": rss},
        "bench_seconds": round(time.perf_counter() - started, 1),
        "command": "make bench" if not (args.quick or args.model or args.sizes) else command,
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    out = Path(args.out or DEFAULT_OUT)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(format_table(report))
    print(f"wrote {out} ({report['bench_seconds']:.0f} s)")
    return 0


def format_table(report: dict) -> str:
    p, g = report["pipeline"], report["goals"]
    ratio_key = next(k for k in p if k.startswith("peak_rss_ratio"))
    met = {k: {True: "yes", False: "NO", None: "n/a"}[v["met"]] for k, v in g.items()}
    rows = [
        ("figure", "value", "goal", "met"),
        ("efficiency", f"{p['efficiency']:.3f}", g["efficiency"]["goal"], met["efficiency"]),
        ("  forward / end-to-end s", f"{p['forward_seconds']:.2f} / {p['end_to_end_seconds']:.2f}",
         f"{p['tiles']} tiles", ""),
        ("mp_per_s", f"{p['mp_per_s']:.2f}", "(reported)", ""),
        ("null_model_vs_gdal", f"{p['null_model_vs_gdal']:.3f}", g["null_model_vs_gdal"]["goal"],
         met["null_model_vs_gdal"]),
        ("  null model / gdal_translate MP/s", f"{p['null_model_mp_per_s']:.1f} / {p['gdal_translate_mp_per_s']:.1f}",
         "", ""),
        *[(f"peak_rss_mb {k}", f"{v:.0f}", "", "") for k, v in p["peak_rss_mb"].items()],
        (ratio_key, f"{p[ratio_key]:.3f}", g["peak_rss_ratio"]["goal"], met["peak_rss_ratio"]),
        ("seam_boundary_ratio", f"{p['seam_boundary_ratio']:.3f}", g["seam_boundary_ratio"]["goal"],
         met["seam_boundary_ratio"]),
        ("seam_boundary_ratio_crop", f"{p['seam_boundary_ratio_crop']:.3f}", g["seam_vs_crop"]["goal"],
         met["seam_vs_crop"]),
        ("  same lines, whole image", f"{report['details']['seams']['seam_boundary_ratio_whole']:.3f}",
         "(reference: no tiling)", ""),
        ("seam_psnr_db", "n/a" if p["seam_psnr_db"] is None else f"{p['seam_psnr_db']:.2f}", "(reported)", ""),
    ]
    if "scale" in report:
        sc = report["scale"]
        rows += [("scale: training images/s, 1 / 2 processes",
                  f"{sc['train_images_per_s_1']:.1f} / {sc['train_images_per_s_2']:.1f}", "(reported)", ""),
                 ("scale: apply MP/s, 1 / 2 processes", f"{sc['infer_mp_per_s_1']:.2f} / {sc['infer_mp_per_s_2']:.2f}",
                  "identical output", "yes" if sc["infer_2_identical_to_1"] else "NO")]
    if "gpu" in report:
        gp = report["gpu"]
        rows += [(f"gpu ({gp['device']}): efficiency / MP/s", f"{gp['efficiency']:.3f} / {gp['mp_per_s']:.1f}",
                  ">= 0.6 / >= 100", ""),
                 ("gpu: null model / GDAL on all cores", f"{gp['null_model_vs_gdal_all_cores']:.3f}", ">= 0.5", "")]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    other = report["details"]["efficiency"].get("other_processes_cpu")
    if other and other > 0.1:
        lines.append(f"warning: other processes used {other:.2f} cores during the efficiency runs; "
                     f"the timings are pessimistic")
    return "\n".join(lines)


# ---------------------------------------------------------------- helpers


def _scale(input_path: str, work: Path, quick: bool) -> dict:
    """The scale section (devtools/scale.py) on a 512 px crop (training) and a 2048 px canvas (apply,
    a U-Net of ngf 8) of the bench input."""
    from .scale import measure_scale

    _log("scale: training and apply with 1 and 2 processes under torchrun")
    canvas = str(work / "canvas_2048.tif")
    if not Path(canvas).exists():
        make_canvas(input_path, canvas, 2048)
    model = make_bench_model(work / "bench_unet_ngf8.satgen", input_path, 8)
    scale = measure_scale(_crop(input_path, work, 512), canvas, str(model), work, quick=quick)
    _log(f"  training x{scale['train_ratio_2_1']}, inference x{scale['infer_ratio_2_1']} with 2 processes")
    return scale


GPU_SIDE = 8192  # px: the raster on which the GPU's end-to-end MP/s is measured (fixed costs spread thin)
GPU_GOALS = {
    "efficiency": ("median >= 0.6", lambda g: g["efficiency"] >= 0.6),
    "mp_per_s": (">= 100 MP/s end to end", lambda g: g["mp_per_s"] >= 100),
    "null_model_vs_gdal_all_cores": (">= 0.5", lambda g: g["null_model_vs_gdal_all_cores"] >= 0.5),
}


def _gpu_only(args, started: float) -> int:
    """The GPU goals alone, in a few minutes of a GPU machine: efficiency of the bench U-Net on the bench
    raster (median of the runs), MP/s end to end on a GPU_SIDE px canvas of it (best of two, after a warm-up),
    and the null model against a GDAL copy compressing on all cores."""
    import torch

    from ..device import resolve_device
    from ..modelfile import load_model
    from ..parallel import cpu_threads
    from ..pipeline import TileOptions, apply_model

    device = resolve_device(args.device)
    if device.type != "cuda" and not args.quick:  # --quick on the CPU: a smoke run of this code, figures meaningless
        raise SystemExit("bench --only gpu measures the GPU goals: it needs a CUDA GPU (torch sees none)")
    setup = QUICK if args.quick else FULL
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    loaded = load_model(make_bench_model(work / f"bench_unet_ngf{setup['ngf']}.satgen", args.input, setup["ngf"]),
                        device=device)
    options = TileOptions(batch_size=args.batch_size, device=str(device))
    options.tile_size, options.overlap = _tiling(loaded, options)
    # a 2048 px canvas of the input (mirrored where the input is smaller): the GPU machine is sent a crop of
    # the sample imagery, since the working tree that travels there is limited
    if setup["efficiency_crop"]:
        efficiency_input = _crop(args.input, work, setup["efficiency_crop"])
    else:
        efficiency_input = str(work / f"canvas_{Path(args.input).stem}_2048.tif")
        if not Path(efficiency_input).exists():
            make_canvas(args.input, efficiency_input, 2048)
    side = 1024 if args.quick else GPU_SIDE
    canvas = work / f"canvas_{Path(args.input).stem}_{side}.tif"
    if not canvas.exists():
        make_canvas(args.input, str(canvas), side)
    figures, details = {}, {}
    # the default (auto: the tiles' arithmetic on the GPU, blending.DeviceStage) and, in the same run, the host's
    for blend in ("device", "host"):
        options.blend = blend
        _log(f"GPU efficiency, blending on the {blend}: {efficiency_input}, batch {args.batch_size}")
        eff = measure_efficiency(loaded, efficiency_input, work, options, args.repeats or setup["repeats"])
        runs = []
        for i in range(2):
            out = work / f"gpu_large_{i}.tif"
            t = time.perf_counter()
            stats = apply_model(loaded, canvas, out, options).stats
            runs.append((time.perf_counter() - t, stats.forward_seconds))
            out.unlink()
            _log(f"  {side} px: {runs[-1][0]:.2f} s end to end, {runs[-1][1]:.2f} s in forward passes")
        seconds, forward = min(runs)
        _log(f"GPU null model against a GDAL copy on all cores, blending on the {blend}")
        null = measure_null_model(args.input, work, side=setup["null_side"], repeats=1 if args.quick else 3,
                                  device=str(device), all_cores=True, blend=blend)
        figures[blend] = {"efficiency": eff["efficiency"], "mp_per_s": round(side * side / 1e6 / seconds, 2),
                          "large_seconds": [round(r[0], 3) for r in runs],
                          # blending on the GPU, the forward passes are queued and run asynchronously: the
                          # share is then that of queuing them, not of running them
                          "large_forward_share": round(forward / seconds, 3),
                          "null_model_vs_gdal_all_cores": null["null_model_vs_gdal"]}
        details[blend] = {"efficiency": eff, "null_model": null}
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu (smoke run)"
    gpu = {"device": name, "precision": "fp32", "batch_size": args.batch_size, "blend": "device (the default on "
           "CUDA: stretch, blend, cast beside the model)", "cpu_threads": cpu_threads(), **figures["device"],
           "efficiency_input": details["device"]["efficiency"]["input"],
           "mp_per_s_input": f"{side} x {side} px canvas of {args.input}",
           "host_blend": figures["host"]}
    goals = {name: {"goal": text, "met": bool(test(gpu))} for name, (text, test) in GPU_GOALS.items()}
    report = {"gpu": gpu, "goals": goals, "details": details,
              "bench_seconds": round(time.perf_counter() - started, 1),
              "command": "python -m engine bench " + " ".join(sys.argv[2:]),
              "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
              "cpu": _cpu_name(), "cpu_count": os.cpu_count(), "torch": torch.__version__}
    out = Path(args.out or work / "bench_gpu.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    for blend, f in figures.items():
        print(f"GPU {gpu['device']}, blending on the {blend}: efficiency {f['efficiency']}, {f['mp_per_s']} MP/s on "
              f"{side} px, null model {f['null_model_vs_gdal_all_cores']} of a GDAL copy on all cores")
    print(f"wrote {out}")
    return 0


def _tiling(loaded, options) -> tuple[int, int]:
    card = loaded.card
    return (options.tile_size or card.tile_size,
            card.overlap if options.overlap is None else options.overlap)


def _crop(input_path: str, work: Path, side: int) -> str:
    import rasterio
    from rasterio.windows import Window

    target = work / f"crop_{Path(input_path).stem}_{side}.tif"
    with rasterio.open(input_path) as src:
        window = Window(0, 0, min(side, src.width), min(side, src.height))
        profile = dict(src.profile, width=window.width, height=window.height, transform=src.window_transform(window))
        with rasterio.open(target, "w", **profile) as dst:
            dst.write(src.read(window=window))
    return str(target)


def _call_child(function: str, *args) -> dict | None:
    """Run bench.<function>(*args) in a fresh interpreter (args through JSON); its
    last stdout line, if JSON, is the result."""
    package = __package__ or "engine"
    root = Path(os.path.abspath(__file__)).parents[len(package.split("."))]  # this very copy of the engine
    code = (f"import json, sys; sys.path.insert(0, {str(root)!r}); from {package}.bench import {function}; "
            f"{function}(*json.loads(sys.argv[1]))")
    done = subprocess.run([sys.executable, "-c", code, json.dumps(args)], stdout=subprocess.PIPE, text=True,
                          check=True)
    last = done.stdout.strip().splitlines()[-1:] or [""]
    return json.loads(last[0]) if last[0].startswith("{") else None


def _vm_hwm_mb() -> float | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


class _OtherLoad:
    """CPU used by other processes since creation, in cores (Linux /proc/stat): timings
    taken while it is well above 0 are not to be trusted."""

    def __init__(self):
        self.start = self._sample()

    @staticmethod
    def _sample():
        try:
            with open("/proc/stat") as f:
                fields = [int(v) for v in f.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        busy = sum(fields[:3]) + sum(fields[5:8])  # user nice system irq softirq steal
        own = os.times()
        return busy / os.sysconf("SC_CLK_TCK"), own.user + own.system + own.children_user + own.children_system, \
            time.monotonic()

    def cores(self) -> float | None:
        end = self._sample()
        if self.start is None or end is None or end[2] <= self.start[2]:
            return None
        other = (end[0] - self.start[0]) - (end[1] - self.start[1])
        return round(max(0.0, other) / (end[2] - self.start[2]), 2)


def _runs_of(values: list[int]) -> list[list[int]]:
    """[4, 4, 1, 4, 4, 1] -> [[4, 2], [1, 1], [4, 2], [1, 1]]: compact batch sizes for the report."""
    runs: list[list[int]] = []
    for v in values:
        if runs and runs[-1][0] == v:
            runs[-1][1] += 1
        else:
            runs.append([v, 1])
    return runs


def _finite(value, digits: int = 2):
    """PSNR of identical images is infinite, which JSON cannot hold: None then."""
    return None if value is None or math.isinf(value) else round(value, digits)


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
