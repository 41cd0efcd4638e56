"""Command-line front end: `python -m engine <command> ...`.

Each command parses its arguments and calls one engine function; errors the
engine raises on purpose are printed as one clear line (exit status 2).
"""

from __future__ import annotations

import argparse
import os
import sys

from .errors import Cancelled, SatGenError
from .progress import ConsoleFeedback


def _bands(text: str) -> list[int]:
    try:
        return [int(b) for b in text.replace(" ", "").split(",") if b]
    except ValueError:
        raise argparse.ArgumentTypeError(f"bands must be 1-based numbers separated by commas, e.g. 3,2,1; got {text!r}")


def _add_tile_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bands", type=_bands, help="1-based input bands for the model, e.g. 3,2,1 (default: matched)")
    p.add_argument("--tile-size", type=int, help="tile size in px (default: the model's)")
    p.add_argument("--overlap", type=int, help="overlap between tiles in px (default: the model's)")
    p.add_argument("--batch-size", type=int, default=4, help="tiles per forward pass (default 4)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:N")


def _tile_options(args):
    from .pipeline import TileOptions

    return TileOptions(tile_size=args.tile_size, overlap=args.overlap, batch_size=args.batch_size,
                       device=args.device, bands=args.bands)


def cmd_apply(args) -> int:
    from .pipeline import apply_model

    result = apply_model(args.model, args.input, args.output, _tile_options(args), ConsoleFeedback())
    st = result.stats
    print(f"wrote {result.output} ({result.width} x {result.height} px): {st.tiles_run} tiles run, "
          f"{st.tiles_skipped} skipped as nodata, {st.seconds:.1f} s")
    return 0


def cmd_translate(args) -> int:
    from .translate import translate

    result = translate(args.input, args.output, args.model, _tile_options(args), ConsoleFeedback(), snap=args.snap)
    print(f"wrote {result.output} ({result.width} x {result.height} px) in {result.stats.seconds:.1f} s")
    return 0


def cmd_train_translation(args) -> int:
    from .training.translation import TranslationConfig, train_translation

    fields = {k: v for k, v in vars(args).items() if k in TranslationConfig.__dataclass_fields__ and v is not None}
    path = train_translation(TranslationConfig(**fields), ConsoleFeedback())
    print(f"wrote model {path}; report in {args.report_dir}")
    return 0


def cmd_train_inpainting(args) -> int:
    from .training.inpainting import InpaintingConfig, train_inpainting

    fields = {k: v for k, v in vars(args).items() if k in InpaintingConfig.__dataclass_fields__ and v is not None}
    path = train_inpainting(InpaintingConfig(**fields), ConsoleFeedback())
    print(f"wrote model {path}; report in {args.report_dir}")
    return 0


def cmd_preview(args) -> int:
    from .preview import preview

    labels = args.labels or [os.path.basename(p) for p in args.inputs]
    print(f"wrote {preview(args.inputs, labels, args.output, args.bands, args.max_size)}")
    return 0


def cmd_info(args) -> int:
    from .modelfile import read_card

    print(read_card(args.model).to_json())
    return 0


def cmd_data(args) -> int:
    from . import sampledata

    sampledata.prepare_samples(args.dest)
    return 0


def cmd_evaluate(args) -> int:
    from . import evaluate

    return evaluate.main(args)


def cmd_bench(args) -> int:
    from . import bench

    return bench.main(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m engine", description="SatGen engine: generative models "
                                     "for georeferenced satellite rasters.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("apply", help="run an image-to-image model file over a raster")
    p.add_argument("--model", required=True, help="SatGen model file (.satgen)")
    p.add_argument("--input", required=True, help="input raster (any GDAL-readable format)")
    p.add_argument("--output", required=True, help="output GeoTIFF")
    _add_tile_options(p)
    p.set_defaults(func=cmd_apply)

    p = sub.add_parser("translate", help="translate a satellite raster into a map (default or given model)")
    p.add_argument("--input", required=True, help="satellite raster")
    p.add_argument("--output", required=True, help="output GeoTIFF (RGB map)")
    p.add_argument("--model", help="translation model file (default: the shipped model)")
    p.add_argument("--no-snap", dest="snap", action="store_false",
                   help="keep the model's raw colours instead of the nearest legend colour")
    _add_tile_options(p)
    p.set_defaults(func=cmd_translate)

    train = sub.add_parser("train", help="train a model on your own data").add_subparsers(dest="task", required=True)
    p = train.add_parser("translation", help="Pix2Pix satellite -> map")
    p.add_argument("--input", required=True, help="satellite raster")
    p.add_argument("--target", required=True, help="map raster (RGB), any CRS and resolution")
    p.add_argument("--output-model", required=True, help="model file to write (.satgen)")
    p.add_argument("--report-dir", required=True, help="folder for checkpoint, curves, samples, metrics")
    p.add_argument("--legend", help="legend JSON of the map (from satgen:render_map_target) for mIoU")
    p.add_argument("--bands", type=_bands, help="1-based input bands (default: all)")
    for name, kind in (("epochs", int), ("patches-per-epoch", int), ("batch-size", int), ("patch-size", int),
                       ("tile-size", int), ("overlap", int), ("ngf", int), ("depth", int), ("ndf", int),
                       ("lambda-l1", float), ("lr", float), ("block-size", int), ("val-fraction", float),
                       ("seed", int), ("min-valid", float)):
        p.add_argument(f"--{name}", type=kind)
    p.add_argument("--l1-only", dest="adversarial", action="store_false", default=None,
                   help="train the L1-only baseline (no discriminator)")
    for name in ("name", "attribution", "licence", "data-description"):
        p.add_argument(f"--{name}", help=f"model card: {name.replace('-', ' ')}")
    p.add_argument("--unlabelled-background", action="store_true", default=None,
                   help="the legend's background colour marks unmapped land: leave it out of loss and scores")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=cmd_train_translation)

    p = train.add_parser("inpainting", help="cloud inpainting, trained on clear imagery with cloud-shaped masks")
    p.add_argument("--inputs", nargs="+", required=True, help="clear raster(s), same bands and dtype")
    p.add_argument("--output-model", required=True, help="model file to write (.satgen)")
    p.add_argument("--report-dir", required=True, help="folder for checkpoint, curves, samples, metrics")
    p.add_argument("--bands", type=_bands, help="1-based bands (default: all)")
    p.add_argument("--real-masks", nargs="+", help="cloud masks (non-zero = cloud) lending real shapes")
    p.add_argument("--exclude-masks", nargs="+", help="per input: a mask of pixels that are not clear (non-zero)")
    for name, kind in (("epochs", int), ("patches-per-epoch", int), ("batch-size", int), ("patch-size", int),
                       ("tile-size", int), ("overlap", int), ("ngf", int), ("depth", int), ("ndf", int),
                       ("coverage-min", float), ("coverage-max", float), ("real-share", float),
                       ("lambda-hole", float), ("lambda-valid", float), ("jitter", float), ("lr", float),
                       ("block-size", int), ("val-fraction", float), ("seed", int)):
        p.add_argument(f"--{name}", type=kind)
    p.add_argument("--l1-only", dest="adversarial", action="store_false", default=None,
                   help="no discriminator (L1 losses only)")
    for name in ("name", "attribution", "licence", "data-description"):
        p.add_argument(f"--{name}", help=f"model card: {name.replace('-', ' ')}")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=cmd_train_inpainting)

    p = sub.add_parser("preview", help="PNG of rasters side by side")
    p.add_argument("--inputs", nargs="+", required=True, help="co-registered rasters")
    p.add_argument("--labels", nargs="+", help="a caption per raster")
    p.add_argument("--bands", type=_bands, help="bands of the first raster to show as RGB, e.g. 3,2,1")
    p.add_argument("--max-size", type=int, default=800)
    p.add_argument("--output", required=True, help="PNG to write")
    p.set_defaults(func=cmd_preview)

    p = sub.add_parser("info", help="print a model file's card")
    p.add_argument("--model", required=True)
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("data", help="fetch the real sample imagery into data/samples")
    p.add_argument("--dest", default="data", help="data folder (default: data)")
    p.set_defaults(func=cmd_data)

    p = sub.add_parser("evaluate", help="measure model quality on held-out data; writes reports/quality.json")
    p.add_argument("--translate-model", default="resources/models/translate_s2_osm.satgen")
    p.add_argument("--translate-baseline", default="reports/baselines/translate_l1.satgen")
    p.add_argument("--work", default="build/evaluate", help="folder for the full-scene outputs")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("bench", help="measure the tile pipeline; writes reports/bench.json")
    from . import bench

    bench.add_arguments(p)
    p.set_defaults(func=cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except Cancelled as exc:
        print(f"\ncancelled: {exc}", file=sys.stderr)
        return 130
    except SatGenError as exc:
        print(f"\nerror: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted; no output was written", file=sys.stderr)
        return 130
