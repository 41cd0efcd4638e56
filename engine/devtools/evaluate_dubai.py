"""Satellite -> land-cover map on the Dubai set, as docs/protocol-dubai-translation.md fixes it.

Four arms on the same training tiles (1-7) and budget: SatGen's Pix2Pix, the same U-Net with L1 only,
a segmentation U-Net of the same size trained with cross-entropy, and the trivial map; all scored on
the held-out Tile 8 by decoded-class mIoU. Training runs checkpoint every epoch: running the same
command again resumes.

    python -m engine.devtools.evaluate_dubai --data ../shared/data/dubai_landcover --work data/dubai
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .. import RESOURCES, metrics
from ..modelfile import load_model
from ..models.unet import UNet
from ..preview import side_by_side
from ..scaling import BandScaling
from ..training.checkpoint import linear_decay, load_checkpoint, save_checkpoint
from ..training.report import update_report
from ..translation.config import TranslationConfig
from ..translation.data import PairPatches, fit_input_scaling, load_pair
from ..translation.train import prepare_data, train_translation

# the colours measured in the masks (DATA.md); black (background) marks pixels nobody labelled
LEGEND_FILE = RESOURCES / "styles" / "dubai_landcover_legend.json"
LEGEND: dict[str, list[int]] = json.loads(LEGEND_FILE.read_text())
CLASSES = [k for k in LEGEND if k != "background"]
TRAIN_TILES, TEST_TILE = "Tile [1-7]", "Tile 8"


def config(data: Path, work: Path, arm: str, args) -> TranslationConfig:
    return TranslationConfig(
        input=str(data / TRAIN_TILES / "images"), target=str(data / TRAIN_TILES / "masks"),
        output_model=str(work / f"{arm}.satgen"), report_dir=str(work / f"report_{arm}"),
        legend=str(work / "legend.json"), unlabelled_background=True, holdout="image", val_fraction=0.1,
        epochs=args.epochs, patches_per_epoch=args.patches, batch_size=args.batch, patch_size=args.patch,
        ngf=args.ngf, upsample=args.upsample, adversarial=arm != "l1", device=args.device, seed=0,
        lambda_class=args.lambda_class if arm == "model" else 0.0, head=args.head if arm == "model" else "colours",
        min_valid=0.5, name="RGB imagery -> land cover, Dubai (Pix2Pix" + (", L1 only)" if arm == "l1" else ")"),
        data_description="Dubai satellite land cover (MBRSC imagery annotated by Humans in the Loop), Tiles 1-7: "
                         "8-bit RGB, very high resolution, not georeferenced; classes building, land, road, "
                         "vegetation, water, unlabeled",
        licence="weights GPL-2.0-or-later; trained on the Dubai land-cover set (CC0)",
        attribution="Dubai land-cover data set: Mohammed Bin Rashid Space Centre imagery, annotated by Humans in "
                    "the Loop (CC0)")


def segmentation_unet(cfg: TranslationConfig) -> UNet:
    """The generator's U-Net with one output per class and no tanh: logits."""
    assert cfg.depth is not None  # nosec B101  # derived by the configuration
    net = UNet(3, len(CLASSES), ngf=cfg.ngf, depth=cfg.depth, upsample=cfg.upsample)
    last = net.up[-1]
    assert isinstance(last, nn.Sequential) and isinstance(last[-1], nn.Tanh)  # nosec B101  # the layout of UNet
    last[-1] = nn.Identity()
    return net


def train_segmentation(cfg: TranslationConfig, work: Path) -> tuple[nn.Module, BandScaling, float]:
    """Cross-entropy training on the patches, sampler, optimiser and schedule Pix2Pix uses; resumes from
    its checkpoint. Returns (network in eval mode, input scaling, seconds trained in this call)."""
    pairs, _ = prepare_data(cfg)
    scaling = fit_input_scaling(pairs)
    data = PairPatches(pairs, None, scaling, cfg.patch_size, cfg.patches_per_epoch, seed=cfg.seed,
                       min_valid=cfg.min_valid or 0.5)
    torch.manual_seed(cfg.seed)
    net: nn.Module = segmentation_unet(cfg)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr, betas=(cfg.beta1, 0.999))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, linear_decay(cfg.epochs, cfg.epochs // 2))
    ckpt = work / "report_segmentation" / "checkpoint.pt"
    state = load_checkpoint(ckpt)
    start, history = 0, []
    if state is not None:
        net.load_state_dict(state["net"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        start, history = int(state["epoch"]), list(state["history"])
    began = time.perf_counter()
    for epoch in range(start, cfg.epochs):
        net.train()
        data.set_epoch(epoch)
        loader = torch.utils.data.DataLoader(data, batch_size=cfg.batch_size, shuffle=False, drop_last=True)
        losses = []
        for batch in loader:
            rgb = torch.round((batch["y"] + 1) * 127.5).permute(1, 0, 2, 3).numpy()  # (3, N, p, p)
            labels = torch.from_numpy(metrics.decode_legend(rgb, [LEGEND[c] for c in CLASSES])).long()
            labels[~batch["valid"]] = -100  # unlabelled pixels: no loss, as in Pix2Pix
            opt.zero_grad(set_to_none=True)
            loss = nn.functional.cross_entropy(net(batch["x"]), labels, ignore_index=-100)
            loss.backward()
            opt.step()
            losses.append(loss.item())
        sched.step()
        history.append({"epoch": epoch + 1, "loss_ce": float(np.mean(losses))})
        print(f"segmentation epoch {epoch + 1}/{cfg.epochs}: cross-entropy {history[-1]['loss_ce']:.4f}", flush=True)
        save_checkpoint(ckpt, {"epoch": epoch + 1, "history": history, "net": net.state_dict(),
                               "opt": opt.state_dict(), "sched": sched.state_dict(), "config": {}})
    net.eval()
    return net, scaling, time.perf_counter() - began


def _whole(net: nn.Module, x: np.ndarray, multiple: int) -> torch.Tensor:
    """The network's output on a whole image (C, H, W) float32, reflect-padded to a multiple."""
    h, w = x.shape[1:]
    ph, pw = -h % multiple, -w % multiple
    t = torch.from_numpy(x)[None]
    if ph or pw:
        t = nn.functional.pad(t, (0, pw, 0, ph), mode="reflect")
    with torch.inference_mode():
        return net(t)[0, :, :h, :w]


def _pair(image: Path) -> tuple[np.ndarray, np.ndarray]:
    """(image, mask colours), both (3, H, W) uint8, of a test or training image and its mask, read as
    training reads them (masks with a colour table expanded)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Dataset has no geotransform")
        pair = load_pair(image, image.parent.parent / "masks" / (image.stem + ".png"))
    return pair.x, pair.y


def predict_classes(arm: str, net: nn.Module, scaling: BandScaling, image: np.ndarray, multiple: int
                    ) -> tuple[np.ndarray, np.ndarray | None]:
    """(class index per pixel, raw RGB output or None) of one arm on one image."""
    x = scaling.to_model(image, clip=3.0)
    out = _whole(net, x, multiple)
    if arm == "segmentation":
        return out.argmax(0).numpy(), None
    rgb = np.clip(np.rint((out.float().numpy() + 1) * 127.5), 0, 255).astype(np.uint8)
    return metrics.decode_legend(rgb, [LEGEND[c] for c in CLASSES]), rgb


def _iou(confusion: np.ndarray) -> dict:
    inter = np.diag(confusion).astype(float)
    union = confusion.sum(0) + confusion.sum(1) - inter
    present = confusion.sum(1) > 0  # classes in the test masks
    per_class = {c: float(inter[i] / union[i]) for i, c in enumerate(CLASSES) if union[i] > 0}
    return {"miou": float(np.mean([per_class[c] for i, c in enumerate(CLASSES) if present[i]])),
            "pixel_accuracy": float(inter.sum() / confusion.sum()), "per_class": per_class}


def write_section(resize: Path, transpose: Path, class_loss: Path | None = None, class_scores: Path | None = None,
                  report: Path = Path("reports/quality.json")) -> int:
    """reports/quality.json's translate_dubai: the scores of every arm, and the checkerboard of the Pix2Pix
    arm's raw output with transposed convolutions (before) and resize-convolutions (after); with `class_loss`,
    the Pix2Pix arm with the class loss of amendment 2, with `class_scores` the generator of class scores of
    amendment 3 (each with its weight chosen on the validation images) beside arm 1, which stays."""
    after, before = json.loads(resize.read_text()), json.loads(transpose.read_text())
    section = {k: v for k, v in after.items() if not k.startswith("checkerboard_")}
    section["checkerboard_before"] = before["checkerboard_model_transpose"]
    section["checkerboard_after"] = after["checkerboard_model_resize"]
    section["checkerboard_l1"] = after.get("checkerboard_l1_resize")
    section["miou_model_transpose"] = before["miou_model"]
    section["checkerboard_note"] = ("metrics.checkerboard: grid contrast (8 px period with its harmonics) of the raw "
                                    "output over the truth's, pooled over the Tile 8 images; 1 = no more periodic "
                                    "pattern than the real masks")
    section["sources"] = [str(resize), str(transpose)]
    command = ("python -m engine.devtools.evaluate_dubai --data <dubai_landcover> (then --upsample transpose --arms "
               "model")
    if class_loss is not None:
        weight = _add_variant(section, class_loss, "class_loss", CHOICE)
        command += f"; then --arms model --lambda-class {weight:g} --work data/dubai-class-{weight:g}"
    if class_scores is not None:
        weight = _add_variant(section, class_scores, "class_scores", CHOICE_SCORES)
        section["shipped"] = ("class_scores: resources/models/translate_rgb_dubai.satgen is this run's model (`make "
                              "models DUBAI=...` retrains it); miou_model and its goals stay arm 1's")
        command += (f"; then --arms model --head classes --lambda-class {weight:g} --work "
                    f"data/dubai-scores-{weight:g}")
    command += (f"; then --section {resize} {transpose}" + (f" --class-loss {class_loss}" if class_loss else "")
                + (f" --class-scores {class_scores}" if class_scores else "") + ")")
    update_report("translate_dubai", section, report, command=command)
    print(json.dumps({k: v for k, v in section.items() if not isinstance(v, (dict, list))}, indent=2))
    return 0


def _add_variant(section: dict, path: Path, name: str, choice: Path) -> float:
    """A variant of the Pix2Pix arm (one run's scores, `path`) into the section as `<score>_model_<name>`, with
    its goals and the validation figures its class-loss weight was chosen by; returns the weight."""
    run = json.loads(path.read_text())
    weight = run["budget"]["lambda_class"]
    key = "lambda_class" if name == "class_loss" else f"lambda_class_{name}"
    section[key] = weight
    if choice.is_file():
        section[f"{key}_choice"] = json.loads(choice.read_text())
    section[f"miou_model_{name}"] = run["miou_model"]
    section[f"pixel_accuracy_model_{name}"] = run["pixel_accuracy_model"]
    section[f"per_class_model_{name}"] = run["per_class_model"]
    checkerboard = [v for k, v in run.items() if k.startswith("checkerboard_model_")]
    if checkerboard:
        section[f"checkerboard_model_{name}"] = checkerboard[0]
    ratio = section[f"goal_model_{name}_vs_segmentation"] = run["miou_model"] / section["miou_segmentation_bound"]
    section["goals"] = dict(section.get("goals", {}), **{
        f"{name}_miou_at_least_0.90_of_segmentation": ratio >= 0.90,
        f"{name}_beats_l1_and_trivial": run["miou_model"] > max(section["miou_l1"], section["miou_trivial"])})
    section["sources"].append(str(path))
    return weight


CHOICE = Path("reports/quality_translate_dubai_class_choice.json")
CHOICE_SCORES = Path("reports/quality_translate_dubai_scores_choice.json")


def choose_lambda_class(works: list[Path], choice: Path = CHOICE) -> int:
    """Amendments 2 and 3's choice: the run (work folder of a Pix2Pix arm with a class loss) with the highest
    final validation mIoU, from its metrics.json; Tile 8 plays no part. Written to `choice`."""
    found = {}
    for work in works:
        metrics_file = work / "report_model" / "metrics.json"
        final = json.loads(metrics_file.read_text()).get("final") if metrics_file.is_file() else None
        if not final:
            print(f"{work}: no finished run (no final scores in {metrics_file})")
            return 1
        found[str(work)] = final["val_miou"]
    for name, miou in found.items():
        print(f"{name}: final val_miou {miou:.4f}")
    chosen = max(found, key=found.__getitem__)
    choice.write_text(json.dumps({"by": "the highest final val_miou: the 10 % of Tiles 1-7 the trainer holds out",
                                  "val_miou": found, "chosen": chosen}, indent=2) + "\n")
    print(f"chosen: {chosen}; wrote {choice}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine.devtools.evaluate_dubai", description=__doc__)
    parser.add_argument("--data", help="the dubai_landcover folder (Tile 1 ... Tile 8)")
    parser.add_argument("--work", default="data/dubai", help="models, checkpoints and reports of the arms")
    parser.add_argument("--output", default="reports/quality_translate_dubai.json")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--patches", type=int, default=800, help="training patches per epoch")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--patch", type=int, default=128)
    parser.add_argument("--ngf", type=int, default=16)
    parser.add_argument("--upsample", default="resize", choices=("resize", "transpose"))
    parser.add_argument("--lambda-class", type=float, default=0.0,
                        help="the Pix2Pix arm's class loss weight (the protocol's amendment 2)")
    parser.add_argument("--head", default="colours", choices=("colours", "classes"),
                        help="what the Pix2Pix arm's generator makes (classes: the protocol's amendment 3)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--arms", default="model,l1,segmentation", help="arms to train and score")
    parser.add_argument("--no-score", action="store_true", help="train (or resume) the arms only: no test scores")
    parser.add_argument("--section", nargs=2, metavar=("RESIZE_JSON", "TRANSPOSE_JSON"),
                        help="only write the translate_dubai section of reports/quality.json from a run of every "
                             "arm and one of the Pix2Pix arm with transposed convolutions")
    parser.add_argument("--class-loss", metavar="JSON", help="with --section: also the scores of the Pix2Pix arm "
                                                             "with the class loss (amendment 2)")
    parser.add_argument("--class-scores", metavar="JSON", help="with --section: also the scores of the generator of "
                                                               "class scores (amendment 3)")
    parser.add_argument("--choice", default=str(CHOICE), help="with --choose-lambda-class: where the choice goes")
    parser.add_argument("--choose-lambda-class", metavar="WORK", nargs="+",
                        help="only print the class-loss weight with the highest final validation mIoU among these "
                             "runs' work folders (amendment 2), with each run's figure")
    args = parser.parse_args(argv)
    if args.choose_lambda_class:
        return choose_lambda_class([Path(w) for w in args.choose_lambda_class], Path(args.choice))
    if args.section:
        return write_section(Path(args.section[0]), Path(args.section[1]),
                             Path(args.class_loss) if args.class_loss else None,
                             Path(args.class_scores) if args.class_scores else None)
    if not args.data:
        parser.error("--data is required to train or score")
    data, work = Path(args.data), Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    (work / "legend.json").write_text(json.dumps(LEGEND))  # the training configuration names this copy
    arms = args.arms.split(",")
    nets: dict[str, tuple[nn.Module, BandScaling]] = {}
    seconds: dict[str, float] = {}
    for arm in arms:
        cfg = config(data, work, arm, args)
        if arm == "segmentation":
            net, scaling, trained_for = train_segmentation(cfg, work)
        else:
            loaded = load_model(train_translation(cfg))
            net, scaling = loaded.module, BandScaling(tuple(loaded.card.inputs.low), tuple(loaded.card.inputs.high))
            # the epochs' own seconds, so a run resumed here (or finished before) reports what it trained for
            history = json.loads((Path(cfg.report_dir) / "metrics.json").read_text()).get("history", [])
            trained_for = sum(h.get("seconds", 0.0) for h in history)
        seconds[arm] = round(trained_for, 1)
        nets[arm] = (net.float().eval(), scaling)
    if args.no_score:
        return 0
    cfg = config(data, work, arms[0], args)
    assert cfg.depth is not None  # nosec B101  # derived by the configuration
    multiple = 2 ** cfg.depth

    # the trivial map: the most frequent class of the training masks' labelled pixels
    counts = np.zeros(len(CLASSES) + 1, np.int64)
    for path in sorted(data.glob(f"{TRAIN_TILES}/images/*.jpg")):
        counts += np.bincount(metrics.decode_legend(_pair(path)[1], list(LEGEND.values())).ravel(),
                              minlength=len(LEGEND))
    trivial = int(np.argmax(counts[:len(CLASSES)]))

    k = len(CLASSES)
    confusion = {arm: np.zeros((k, k), np.int64) for arm in [*arms, "trivial"]}
    raw_pred: dict[str, list[np.ndarray]] = {arm: [] for arm in arms}
    raw_true: list[np.ndarray] = []
    preview = None
    images = sorted(data.glob(f"{TEST_TILE}/images/*.jpg"))
    for path in images:
        image, truth_rgb = _pair(path)
        truth = metrics.decode_legend(truth_rgb, list(LEGEND.values()))
        labelled = truth < k
        t = truth[labelled]
        picture = {"image": image, "truth": truth_rgb}
        for arm in arms:
            net, scaling = nets[arm]
            classes, rgb = predict_classes(arm, net, scaling, image, multiple)
            confusion[arm] += np.bincount(t * k + classes[labelled], minlength=k * k).reshape(k, k)
            picture[arm] = np.asarray([LEGEND[c] for c in CLASSES], np.uint8)[classes].transpose(2, 0, 1)
            if rgb is not None:
                raw_pred[arm].append(rgb)
        raw_true.append(truth_rgb)
        confusion["trivial"] += np.bincount(t * k + trivial, minlength=k * k).reshape(k, k)
        if preview is None or image.shape[1] * image.shape[2] > preview["image"].shape[1] * preview["image"].shape[2]:
            preview = picture
        print(f"scored {path.parent.parent.name}/{path.name}", flush=True)

    out: dict = {"protocol": "docs/protocol-dubai-translation.md", "train": f"{TRAIN_TILES} (images and masks)",
                 "test": f"{TEST_TILE}: {len(images)} images, {int(confusion['trivial'].sum())} labelled pixels",
                 "budget": {"epochs": args.epochs, "patches_per_epoch": args.patches, "batch": args.batch,
                            "patch_px": args.patch, "ngf": args.ngf, "depth": cfg.depth, "upsample": args.upsample,
                            "lambda_class": args.lambda_class, "head": args.head, "device": args.device,
                            "train_seconds": seconds},
                 "trivial_class": CLASSES[trivial]}
    names = {"model": "model", "l1": "l1", "segmentation": "segmentation_bound", "trivial": "trivial"}
    for arm, conf in confusion.items():
        scores = _iou(conf)
        out[f"miou_{names[arm]}"] = scores["miou"]
        out[f"pixel_accuracy_{names[arm]}"] = scores["pixel_accuracy"]
        out[f"per_class_{names[arm]}"] = scores["per_class"]
    for arm in arms:
        if raw_pred[arm]:
            out[f"checkerboard_{names[arm]}_{args.upsample}"] = metrics.checkerboard(raw_pred[arm], raw_true)
    if "model" in arms and "segmentation" in arms:
        out["goal_model_vs_segmentation"] = out["miou_model"] / out["miou_segmentation_bound"]
        out["goals"] = {"miou_at_least_0.90_of_segmentation": out["goal_model_vs_segmentation"] >= 0.90,
                        "beats_l1_and_trivial": out["miou_model"] > max(out.get("miou_l1", 0), out["miou_trivial"])}
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(out, indent=2) + "\n")
    if preview is not None:
        shown = ["image", *[a for a in ("model", "l1", "segmentation") if a in arms], "truth"]
        labels = {"image": "Tile 8 (held out)", "model": "SatGen Pix2Pix", "l1": "L1 only",
                  "segmentation": "segmentation U-Net", "truth": "truth"}
        side_by_side([np.ascontiguousarray(preview[s][:, :800, :800].transpose(1, 2, 0)) for s in shown],
                     [labels[s] for s in shown], Path(args.output).with_suffix(".png"))
    print(json.dumps({k: v for k, v in out.items() if not isinstance(v, dict)}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
