"""Command-line front end: `python -m engine <command> ...`.

Each command parses its arguments and calls one engine function; errors the
engine raises on purpose are printed as one clear line (exit status 2).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import signal
import sys
from collections.abc import Callable

from .errors import Cancelled, InputError, SatGenError
from .progress import ConsoleFeedback, Feedback
from .training.options import add_arguments, cli_bands, from_arguments


def _add_normalize(p: argparse.ArgumentParser, fitted_on: str) -> None:
    from .scaling import NORMALIZE

    p.add_argument("--normalize", choices=NORMALIZE, default="model",
                   help=f"stretch the bands as in training (model) or by {fitted_on} (scene: for imagery unlike "
                        f"the model's training data)")


def _add_tile_options(p: argparse.ArgumentParser) -> None:
    from .blending import BLENDS
    from .raster import JOINS, OVERVIEW_SIDE, OVERVIEWS

    p.add_argument("--bands", type=cli_bands, help="1-based input bands for the model, e.g. 3,2,1 (default: matched)")
    p.add_argument("--tile-size", type=int, help="tile size in px (default: the model's)")
    p.add_argument("--overlap", type=int, help="overlap between tiles in px (default: the model's)")
    p.add_argument("--batch-size", type=int, default=4, help="tiles per forward pass (default 4)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:N")
    p.add_argument("--overviews", choices=OVERVIEWS, default="auto",
                   help=f"internal overviews in the outputs, for fast display (auto: when longer than {OVERVIEW_SIDE} "
                        f"px on a side)")
    p.add_argument("--blend", choices=BLENDS, default="auto",
                   help="where the tiles are stretched, blended and cast to the output type: beside the model on its "
                        "device, or on the host's cores (auto: the device when it is a CUDA GPU). Inpainting "
                        "always blends on the host")
    p.add_argument("--join", choices=JOINS, default="geotiff",
                   help="how the outputs are written: one GeoTIFF; a VRT (name it .vrt) naming the parts as the "
                        "processes wrote them, in a folder <name>_parts beside it, copied nowhere (torchrun on "
                        "several nodes sharing a file system); or one cloud-optimized GeoTIFF (GDAL's COG driver)")


def _tile_options(args):
    from .pipeline import TileOptions

    return TileOptions(tile_size=args.tile_size, overlap=args.overlap, batch_size=args.batch_size,
                       device=args.device, bands=args.bands, overviews=args.overviews, join=args.join,
                       blend=args.blend)


def _is_main() -> bool:
    """Whether this process reports to the console: always, but for the second and later processes of a
    run that torchrun split over several (their console lines would garble the first one's)."""
    from . import distributed

    return distributed.current().is_main


def _feedback() -> Feedback:
    return ConsoleFeedback() if _is_main() else Feedback()


def _say(text: str) -> None:
    if _is_main():
        print(text)


def cmd_apply(args) -> int:
    from .pipeline import apply_model

    result = apply_model(args.model, args.input, args.output, _tile_options(args), _feedback(),
                         normalize=args.normalize)
    st = result.stats
    _say(f"wrote {result.output} ({result.width} x {result.height} px): {st.tiles_run} tiles run, "
         f"{st.tiles_skipped} skipped as nodata, {st.seconds:.1f} s")
    return 0


def cmd_translate(args) -> int:
    from .translation.apply import translate

    result = translate(args.input, args.output, args.model, _tile_options(args), _feedback(), snap=args.snap,
                       normalize=args.normalize)
    _say(f"wrote {result.output} ({result.width} x {result.height} px) in {result.stats.seconds:.1f} s")
    return 0


def cmd_inpaint(args) -> int:
    from .inpainting.apply import MaskOptions, inpaint

    masks = MaskOptions(mask=args.mask, mask_layer=args.mask_layer, qa=args.qa, qa_band=args.qa_band,
                        qa_expression=args.qa_expression, detect=args.detect, detect_bands=args.detect_bands,
                        dilate=args.dilate)
    if args.qa_expression and not (args.qa or args.qa_band):
        masks.qa_band = 1
    references = None
    if args.reference:
        from .inpainting.references import ReferenceOptions, as_paths

        references = ReferenceOptions(
            paths=args.reference, bands=args.reference_bands, masks=as_paths(args.reference_mask),
            qa_band=args.reference_qa_band, qa_expression=args.reference_qa_expression,
            detect=args.reference_detect, dates=args.reference_dates, date=args.date,
            combine=args.reference_combine or "weighted")
    else:
        for flag in ("reference_bands", "reference_mask", "reference_qa_band", "reference_qa_expression",
                     "reference_dates", "reference_detect", "date", "reference_combine"):
            if getattr(args, flag):
                raise InputError(f"--{flag.replace('_', '-')} was given without --reference; give the reference "
                                 f"rasters or leave it out")
    result = inpaint(args.input, args.output, args.model, masks, _tile_options(args), _feedback(),
                     output_mask=args.output_mask, normalize=args.normalize, reference=references,
                     output_source=args.output_source, output_uncertainty=args.output_uncertainty)
    st = result.stats
    said = (f"wrote {result.output} ({result.width} x {result.height} px, cloud cover {result.cloud_fraction:.1%}): "
            f"{st.tiles_run} tiles filled, {st.tiles_skipped} copied, {st.seconds:.1f} s")
    if result.mask:
        said += f"; mask {result.mask}"
    if result.best_effort:
        said += "; BEST EFFORT: mostly cloud"
    _say(said)
    return 0


def cmd_train_translation(args) -> int:
    from .translation.train import TranslationConfig, train_translation

    path = train_translation(from_arguments(TranslationConfig, args), _feedback())
    _say(f"wrote model {path}; report in {args.report_dir}")
    return 0


def cmd_train_inpainting(args) -> int:
    from .inpainting.train import InpaintingConfig, train_inpainting

    path = train_inpainting(from_arguments(InpaintingConfig, args), _feedback())
    _say(f"wrote model {path}; report in {args.report_dir}")
    return 0


def cmd_train_synthesis(args) -> int:
    from .synthesis.training import SynthesisConfig, train_synthesis

    path = train_synthesis(from_arguments(SynthesisConfig, args), _feedback())
    _say(f"wrote model {path}; report in {args.report_dir}")
    return 0


def cmd_synthesize(args) -> int:
    from .synthesis.synthesize import synthesize

    result = synthesize(args.output_folder, args.model, args.classes, args.count, args.seed, args.guidance,
                        args.steps, args.format, args.output_preview, args.device, feedback=ConsoleFeedback())
    total = sum(len(f) for f in result.files.values())
    print(f"wrote {total} patch(es) of {len(result.files)} class(es) to {result.folder} (manifest "
          f"{result.manifest})" + (f"; preview {result.preview}" if result.preview else ""))
    return 0


def cmd_evaluate_synthesis(args) -> int:
    from .devtools import evaluate

    return evaluate.main_synthesis(args)


def cmd_preview(args) -> int:
    from .preview import preview

    labels = args.labels or [os.path.basename(p) for p in args.inputs]
    print(f"wrote {preview(args.inputs, labels, args.output, args.bands, args.max_size)}")
    return 0


def cmd_preview_inpaint(args) -> int:
    from .preview import inpaint_preview

    path = inpaint_preview(args.input, args.filled, args.mask, args.output, args.input_bands, args.filled_bands,
                           args.labels)
    print(f"wrote {path}")
    return 0


def cmd_info(args) -> int:
    from .modelfile import read_card

    print(read_card(args.model).to_json())
    return 0


def cmd_data(args) -> int:
    from .devtools import sampledata

    sampledata.prepare_samples(args.dest)
    return 0


def cmd_evaluate(args) -> int:
    from .devtools import evaluate

    return evaluate.main(args)


def cmd_bench(args) -> int:
    from .devtools import bench

    return bench.main(args)


SECTIONS = ("translate", "inpaint", "synthesize")  # of reports/quality.json


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m engine", description="SatGen engine: generative models "
                                     "for georeferenced satellite rasters.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("apply", help="run an image-to-image model file over a raster")
    p.add_argument("--model", required=True, help="SatGen model file (.satgen)")
    p.add_argument("--input", required=True, help="input raster (any GDAL-readable format)")
    p.add_argument("--output", required=True, help="output GeoTIFF")
    _add_normalize(p, "this raster's valid pixels")
    _add_tile_options(p)
    p.set_defaults(func=cmd_apply)

    p = sub.add_parser("translate", help="translate a satellite raster into a map (default or given model)")
    p.add_argument("--input", required=True, help="satellite raster")
    p.add_argument("--output", required=True, help="output GeoTIFF (RGB map)")
    p.add_argument("--model", help="translation model file (default: the shipped model)")
    p.add_argument("--no-snap", dest="snap", action="store_false",
                   help="keep the model's raw colours instead of the nearest legend colour")
    _add_normalize(p, "this raster's valid pixels")
    _add_tile_options(p)
    p.set_defaults(func=cmd_translate)

    p = sub.add_parser("inpaint", help="fill the cloudy pixels of a raster (default or given model)")
    p.add_argument("--input", required=True, help="cloudy raster")
    p.add_argument("--output", required=True, help="output GeoTIFF (selected bands, input's dtype)")
    p.add_argument("--output-mask", help="GeoTIFF of the cloud mask used (1 cloud, 0 clear, 255 nodata)")
    p.add_argument("--model", help="inpainting model file (default: the shipped model)")
    p.add_argument("--mask", help="cloud mask: raster (non-zero = cloud) or polygons (GeoPackage, GeoJSON)")
    p.add_argument("--mask-layer", help="layer of a multi-layer GeoPackage mask")
    p.add_argument("--qa", help="raster holding the QA band (default: the input, with --qa-band)")
    p.add_argument("--qa-band", type=int, help="1-based band of the QA raster (default 1)")
    p.add_argument("--qa-expression", help="which QA values are cloud, e.g. 'bits(14, 15) == 3'")
    p.add_argument("--detect", action="store_true", help="detect clouds with the spectral test")
    p.add_argument("--detect-bands", help="band roles for --detect where the band names do not tell them, e.g. "
                                          "blue=1,green=2,red=3,nir=4,swir1=5 (roles: blue green red nir swir1)")
    p.add_argument("--dilate", type=int, default=0, help="grow the mask by this many pixels")
    _add_normalize(p, "this scene's clear pixels")
    p.add_argument("--reference", nargs="+", metavar="RASTER",
                   help="images of the same place on other dates (any grid): each cloudy pixel is filled from the "
                        "dates clear there, each matched to this date; the model fills the rest")
    p.add_argument("--reference-bands", type=cli_bands, help="1-based reference bands matching the input bands "
                                                             "(default: the same band numbers)")
    p.add_argument("--reference-mask", nargs="+", metavar="MASK",
                   help="each reference's own cloud mask (raster non-zero = cloud, or polygons), in the order of "
                        "--reference; 'none' for a reference without")
    p.add_argument("--reference-qa-band", type=int, help="the band of each reference holding QA flags")
    p.add_argument("--reference-qa-expression", help="which of the references' QA values are cloud")
    p.add_argument("--reference-detect", action="store_true", help="detect each reference's clouds")
    p.add_argument("--reference-dates", type=lambda t: [d.strip() for d in t.split(",")],
                   help="the references' dates, YYYY-MM-DD, comma-separated, in the order of --reference "
                        "(default: from their metadata or file names)")
    p.add_argument("--date", help="this raster's date, YYYY-MM-DD (default: from its metadata or file name)")
    p.add_argument("--reference-combine", choices=["weighted", "nearest"],
                   help="weighted (default): per pixel, the references clear there averaged by their measured "
                        "match; nearest: per pixel the nearest date clear there")
    p.add_argument("--output-source", help="GeoTIFF saying what filled each pixel: 0 the input's own, 1.. the "
                                           "references in the order given, 100 the model, 255 nodata")
    p.add_argument("--output-uncertainty", help="GeoTIFF, per band, the half-width of each filled value's "
                                                "80 %% interval (0 where not filled)")
    _add_tile_options(p)
    p.set_defaults(func=cmd_inpaint)

    train = sub.add_parser("train", help="train a model on your own data").add_subparsers(dest="task", required=True)
    from .inpainting.train import InpaintingConfig
    from .synthesis.training import SynthesisConfig
    from .translation.train import TranslationConfig

    for task, config_class, func, about in (
            ("translation", TranslationConfig, cmd_train_translation, "Pix2Pix satellite -> map"),
            ("inpainting", InpaintingConfig, cmd_train_inpainting,
             "cloud inpainting, trained on clear imagery with cloud-shaped masks"),
            ("synthesis", SynthesisConfig, cmd_train_synthesis,
             "class-conditional patch synthesis (diffusion, or the cdcgan baseline)")):
        p = train.add_parser(task, help=about, description=about)
        add_arguments(p, config_class)
        p.set_defaults(func=func)

    p = sub.add_parser("synthesize", help="generate labelled patches of chosen classes (a class-folder data set)")
    p.add_argument("--output-folder", required=True, help="folder for <class>/ sub-folders and manifest.csv")
    p.add_argument("--model", help="synthesis model file (default: the shipped model)")
    p.add_argument("--classes", default="", help="class names separated by commas (default: all)")
    p.add_argument("--count", type=int, default=16, help="patches per class (default 16)")
    p.add_argument("--seed", type=int, default=0, help="same seed, same patches (default 0)")
    p.add_argument("--guidance", type=float, help="classifier-free guidance (1: none; default: the model's)")
    p.add_argument("--steps", type=int, help="sampler steps (default: the model's)")
    p.add_argument("--format", choices=["tif", "png"], default="tif",
                   help="tif: band values as trained; png: 8-bit natural colour")
    p.add_argument("--output-preview", help="mosaic of the patches: .tif (a layer) or .png")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=cmd_synthesize)

    p = sub.add_parser("preview", help="PNG of rasters side by side")
    p.add_argument("--inputs", nargs="+", required=True, help="co-registered rasters")
    p.add_argument("--labels", nargs="+", help="a caption per raster")
    p.add_argument("--bands", type=cli_bands, help="bands of the first raster to show as RGB, e.g. 3,2,1")
    p.add_argument("--max-size", type=int, default=800)
    p.add_argument("--output", required=True, help="PNG to write")
    p.set_defaults(func=cmd_preview)

    p = sub.add_parser("preview-inpaint", help="PNG: cloudy | mask | filled, stretched alike")
    p.add_argument("--input", required=True, help="the cloudy raster")
    p.add_argument("--filled", required=True, help="the filled raster (inpaint output)")
    p.add_argument("--mask", required=True, help="the mask used (inpaint's mask output)")
    p.add_argument("--input-bands", type=cli_bands, default=[1, 2, 3], help="RGB bands of the input, e.g. 4,3,2")
    p.add_argument("--filled-bands", type=cli_bands, default=[1, 2, 3], help="RGB bands of the filled raster")
    p.add_argument("--labels", nargs=3, help="three captions")
    p.add_argument("--output", required=True, help="PNG to write")
    p.set_defaults(func=cmd_preview_inpaint)

    p = sub.add_parser("info", help="print a model file's card")
    p.add_argument("--model", required=True)
    p.set_defaults(func=cmd_info)

    if importlib.util.find_spec(__package__ + ".devtools") is not None:  # not in the plugin package
        _add_devtools(sub)
    return parser


def _add_devtools(sub) -> None:
    """Commands of the development tools (sample data, quality evaluation, benchmarks): source tree only."""
    p = sub.add_parser("evaluate-synthesis", help="FID/KID, CAS and augmentation gain of synthesis models; "
                       "writes the synthesize section of reports/quality.json")
    p.add_argument("--model", default="resources/models/synthesize_s2_osm.satgen")
    p.add_argument("--baseline", default="reports/baselines/synthesize_cdcgan.satgen")
    p.add_argument("--n", type=int, default=100, help="synthetic patches per class (default 100)")
    p.add_argument("--repeats", type=int, default=3, help="classifier trainings averaged per score (default 3)")
    p.add_argument("--inception-weights", help="Inception-v3 weights file (torchvision's or pytorch-fid's .pth, or "
                   "safetensors): KID/FID in ImageNet Inception space as well")
    p.add_argument("--device", default="auto", help="device of the Inception features (auto: CUDA when present)")
    p.add_argument("--seed", type=int, default=1000, help="seed of the synthetic patches (default 1000)")
    p.add_argument("--classifier-seed", type=int, default=0,
                   help="first classifier training seed (default 0; then +1 per repeat)")
    p.add_argument("--report", default="reports/quality.json")
    p.set_defaults(func=cmd_evaluate_synthesis)

    p = sub.add_parser("data", help="fetch the real sample imagery into data/samples")
    p.add_argument("--dest", default="data", help="data folder (default: data)")
    p.set_defaults(func=cmd_data)

    p = sub.add_parser("evaluate", help="measure model quality on held-out data; writes reports/quality.json")
    p.add_argument("--translate-model", default="resources/models/translate_s2_osm.satgen")
    p.add_argument("--translate-baseline", default="reports/baselines/translate_l1.satgen")
    p.add_argument("--inpaint-model", default="resources/models/inpaint_s2.satgen")
    p.add_argument("--synthesize-model", default="resources/models/synthesize_s2_osm.satgen")
    p.add_argument("--synthesize-baseline", default="reports/baselines/synthesize_cdcgan.satgen")
    p.add_argument("--inception-weights", help="Inception-v3 weights file: synthesis KID/FID in Inception space too")
    p.add_argument("--only", nargs="+", choices=SECTIONS, default=SECTIONS, help="sections to measure (default: all)")
    p.add_argument("--work", default="build/evaluate", help="folder for the full-scene outputs")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("bench", help="measure the tile pipeline; writes reports/bench.json")
    from .devtools import bench

    bench.add_arguments(p)
    p.set_defaults(func=cmd_bench)


# commands torchrun may start in several processes (`torchrun --nproc_per_node=N -m engine CMD ...`)
DISTRIBUTED = ("apply", "translate", "inpaint", "train")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if "WORLD_SIZE" in os.environ:  # torch is imported only under a launcher
        from . import distributed

        if distributed.launched():
            return _in_process_group(args)
    return _run(lambda: args.func(args))


def _run(command: Callable[[], int], where: str = "") -> int:
    """`command()`, its errors printed as one line (the engine's own) beginning with `where`."""
    try:
        return command()
    except Cancelled as exc:
        print(f"\n{where}cancelled: {exc}", file=sys.stderr)
        return 130
    except SatGenError as exc:
        print(f"\n{where}error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\n{where}interrupted; no output was written", file=sys.stderr)
        return 130


def _interrupt_once(signum, frame) -> None:
    """A stop as an interrupt, so that temporary files are deleted on the way out; later signals
    are ignored, so that this is not cut short."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    raise KeyboardInterrupt


def _in_process_group(args) -> int:
    """The command in one of the processes torchrun started, joined to the others while it runs."""
    from . import distributed

    def command() -> int:
        if args.command not in DISTRIBUTED:
            name = " ".join(filter(None, (args.command, getattr(args, "task", None))))
            raise InputError(f"{name} runs in one process; start it without torchrun")
        distributed.init(getattr(args, "device", None) or "auto")
        # torchrun stops the other processes (SIGTERM) when one fails, and passes on Ctrl-C as well
        stops = {sig: signal.signal(sig, _interrupt_once) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            return args.func(args)
        finally:
            for sig, handler in stops.items():
                signal.signal(sig, handler)

    try:
        return _run(command, f"process {os.environ.get('RANK', '?')} of {os.environ['WORLD_SIZE']}: ")
    finally:
        distributed.finish()
