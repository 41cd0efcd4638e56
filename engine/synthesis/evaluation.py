"""Honest scores of synthesis models on real held-out patches.

The data set is rebuilt from the model card's training configuration, so the
held-out blocks are exactly those training never saw. Feature space: a small
CNN (engine.synthesis.classifier) trained on the real *training* patches only;
ImageNet-Inception features are not used (no weights here, and they fit
multispectral patches badly). For each model:

- KID and FID per class: `n` synthetic patches of the class against the real
  held-out patches of the class; pooled: all classes together. For scale, the
  same distances between the real training and real held-out patches;
- CAS: a classifier trained only on synthetic patches (`n` per class), tested on
  the real held-out patches, beside the same classifier trained on real patches;
- augmentation, two ways: real training patches + `n` synthetic per class, and
  "top-up" (the use the tool is for, a class short of samples): synthetic
  patches only where a class has fewer real training patches than the largest
  class, up to that count; each against real alone.
Accuracies are balanced (mean recall over classes: the held-out set is mostly
one class), plain accuracy is given too; classifier scores are means over
`repeats` trainings with different seeds.

With `inception_weights` (a file the user supplies, engine.synthesis.inception),
KID and FID are taken in ImageNet Inception-v3 space as well
(`distances_inception`), on the natural-colour bands.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..bands import display_bands
from ..errors import InputError
from ..modelfile import load_model
from ..progress import Feedback
from .classifier import PatchClassifier, accuracies, predict, train_classifier
from .datasets import patches_to_model
from .scores import fid, kid
from .synthesize import generate, sampler_defaults
from .training import config_from_card, prepare_patches

SEED = 1000  # synthetic patches for evaluation: fixed, and apart from the seeds users try first


def _mean_dicts(runs: list[dict]) -> dict:
    out: dict[str, Any] = {}
    for key in runs[0]:
        if isinstance(runs[0][key], dict):
            out[key] = _mean_dicts([r[key] for r in runs])
        else:
            out[key] = float(np.mean([r[key] for r in runs]))
    return out


def synthetic_patches(path, classes: list[str], counts: list[int], scaling, feedback,
                      seed: int = SEED) -> tuple[np.ndarray, np.ndarray, dict]:
    """-> (x, y, model info): counts[i] patches of classes[i] drawn by the model file `path`, in the value `scaling`."""
    loaded = load_model(path, tasks=("synthesize",))
    card = loaded.card
    missing = [c for c in classes if c not in card.classes]
    if missing:
        raise InputError(f"{path} knows no class {', '.join(missing)}; compare models trained on the same classes")
    xs, ys = [], []
    for i, (c, n) in enumerate(zip(classes, counts, strict=True)):
        x = generate(loaded, card.classes.index(c), n, seed=seed)
        values = np.moveaxis(card.outputs.scaling.from_model(np.moveaxis(x, 1, 0)), 0, 1)  # band units
        xs.append(patches_to_model(scaling, values))  # then the common scaling
        ys.append(np.full(n, i, np.int64))
        feedback.info(f"  {path}: {n} x {c}")
    guidance, steps = sampler_defaults(card)
    info: dict[str, Any] = {"architecture": card.architecture, "file": str(path)}
    if card.architecture != "cdcgan":
        info.update(guidance=guidance, steps=steps)
    return np.concatenate(xs), np.concatenate(ys), info


def first_per_class(x: np.ndarray, y: np.ndarray, counts: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """-> (x, y) of the first counts[i] patches of each class i (labels y), class by class."""
    keep = np.concatenate([np.flatnonzero(y == i)[:c] for i, c in enumerate(counts)]).astype(np.int64)
    return x[keep], y[keep]


def _distances(feat_syn, y_syn, feat_ref, y_ref, classes) -> dict:
    per_kid, per_fid = {}, {}
    for i, c in enumerate(classes):
        a, b = feat_syn[y_syn == i], feat_ref[y_ref == i]
        per_kid[c], per_fid[c] = kid(a, b), fid(a, b)
    valid = [per_kid[c] for c in classes if np.isfinite(per_kid[c])]
    return {"kid_mean_per_class": float(np.mean(valid)) if valid else float("nan"),
            "fid_mean_per_class": float(np.nanmean([per_fid[c] for c in classes])),
            "kid_pooled": kid(feat_syn, feat_ref), "fid_pooled": fid(feat_syn, feat_ref),
            "kid_per_class": per_kid, "fid_per_class": per_fid}


def evaluate_synthesis(model, baseline, n: int = 100, repeats: int = 2, steps: int = 250, batch_size: int = 32,
                       feedback: Feedback | None = None, inception_weights=None, device: str = "auto",
                       seed: int = SEED, classifier_seed: int = 0) -> dict:
    """`seed`: of the synthetic patches; classifier trainings use seeds classifier_seed, classifier_seed + 1, ..."""
    feedback = feedback or Feedback()
    card = load_model(model, tasks=("synthesize",)).card
    inception = None
    if inception_weights:  # checked first: a bad weights file fails before the long part
        from ..device import resolve_device
        from .inception import InceptionFeatures

        inception = InceptionFeatures(inception_weights, resolve_device(device))
    config = config_from_card(card)
    patches = prepare_patches(config, warn=feedback.info)
    classes = [c for c in card.classes if c in patches.classes]
    scaling = card.outputs.scaling

    x_tr, y_tr = patches.part("train")
    x_val, y_val = patches.part("val")
    if not len(y_val):
        raise InputError("the data set has no held-out patch to evaluate on")
    x_tr, x_val = patches_to_model(scaling, x_tr), patches_to_model(scaling, x_val)
    k = len(classes)

    top_up = top_up_counts(y_tr, k)
    equal = [n] * k
    synthetic, info = {}, {}
    for name, path in (("model", model), ("cdcgan", baseline)):
        counts = [max(a, b) for a, b in zip(equal, top_up, strict=True)]
        xs, ys, info[name] = synthetic_patches(path, classes, counts, scaling, feedback, seed)
        synthetic[name] = {"equal": first_per_class(xs, ys, equal), "top_up": first_per_class(xs, ys, top_up)}

    def judge(x: np.ndarray, y: np.ndarray, seed: int) -> tuple[PatchClassifier, dict]:
        net = train_classifier(x, y, k, steps=steps, batch_size=batch_size, seed=seed, feedback=feedback)
        return net, accuracies(predict(net, x_val)[0], y_val, classes)

    runs: dict[str, list] = {key: [] for key in ("real", "cas_model", "cas_cdcgan", "real_plus_model",
                                                 "real_plus_cdcgan", "real_topup_model", "real_topup_cdcgan")}
    feature_net: PatchClassifier | None = None
    for r in range(classifier_seed, classifier_seed + repeats):
        net, acc = judge(x_tr, y_tr, r)
        if feature_net is None:
            feature_net = net
        runs["real"].append(acc)
        for name in ("model", "cdcgan"):
            xs, ys = synthetic[name]["equal"]
            runs[f"cas_{name}"].append(judge(xs, ys, r)[1])
            runs[f"real_plus_{name}"].append(judge(np.concatenate([x_tr, xs]), np.concatenate([y_tr, ys]), r)[1])
            xs, ys = synthetic[name]["top_up"]
            runs[f"real_topup_{name}"].append(judge(np.concatenate([x_tr, xs]), np.concatenate([y_tr, ys]), r)[1])
        feedback.info(f"classifier repeat {r - classifier_seed + 1}/{repeats} done")
    scores = {key: dict(_mean_dicts(v), balanced_accuracy_per_repeat=[a["balanced_accuracy"] for a in v])
              for key, v in runs.items()}

    def distance_table(features) -> dict:
        """KID/FID of each model's synthetic patches and of the real training patches against the held-out ones."""
        held_out = features(x_val)
        table = {name: _distances(features(synthetic[name]["equal"][0]), synthetic[name]["equal"][1], held_out,
                                  y_val, classes) for name in ("model", "cdcgan")}
        table["real_train"] = _distances(features(x_tr), y_tr, held_out, y_val, classes)
        return table

    if feature_net is None:  # no repeat ran (_mean_dicts above already fails then)
        raise InputError("repeats must be at least 1")
    dist = distance_table(lambda x: predict(feature_net, x)[1])
    dist_inception = None
    if inception is not None:
        feedback.info(f"Inception-v3 features ({inception.path.name})")
        rgb = display_bands(card.outputs.names)
        dist_inception = distance_table(lambda x: inception(x, rgb))

    out = {
        "data": card.training.get("data", ""),
        "classes": classes,
        "counts": {"train": patches.counts("train"), "held_out": patches.counts("val")},
        "n_synthetic_per_class": n,
        "seeds": {"synthetic": seed, "classifiers": list(range(classifier_seed, classifier_seed + repeats))},
        "top_up_per_class": dict(zip(classes, top_up, strict=True)),
        "feature_space": "penultimate layer (128-d) of a small CNN classifier trained on the real training patches "
                         "only (engine.synthesis.classifier); not ImageNet Inception",
        "reference": "real held-out patches of each class (spatial blocks training never saw); 'real_train' scores "
                     "the real training patches against them, the level a generator reproducing the training data "
                     "would reach",
        "accuracy_note": "acc_* and cas_* are balanced accuracies (mean recall over classes) on the real held-out "
                         f"patches, mean of {repeats} classifier trainings ({steps} steps of {batch_size}, "
                         "class-balanced); plain accuracy in 'classifiers'",
        "augmentation_note": "real_plus: n synthetic patches of every class added; real_topup: synthetic patches "
                             "only for the classes with fewer real training patches than the largest one, up to its "
                             "count (top_up_per_class)",
        "models": info,
        "distances": dist,
        "classifiers": scores,
    }
    if inception is not None:
        out["distances_inception"] = dist_inception
        out["inception"] = {"weights": str(inception.path), "variant": inception.variant,
                            "feature_space": "ImageNet Inception-v3 pool (2048-d), natural-colour bands "
                            + ", ".join(card.outputs.names[i] for i in rgb)
                            + ", values in [-1, 1] (the weights' input range), bilinear to 299 px"}
    out["summary"] = {
        "synthesize.kid_model": dist["model"]["kid_mean_per_class"],
        "synthesize.kid_cdcgan": dist["cdcgan"]["kid_mean_per_class"],
        "synthesize.kid_real_train": dist["real_train"]["kid_mean_per_class"],
        "synthesize.fid_model": dist["model"]["fid_mean_per_class"],
        "synthesize.fid_cdcgan": dist["cdcgan"]["fid_mean_per_class"],
        "synthesize.kid_pooled_model": dist["model"]["kid_pooled"],
        "synthesize.kid_pooled_cdcgan": dist["cdcgan"]["kid_pooled"],
        "synthesize.cas_model": scores["cas_model"]["balanced_accuracy"],
        "synthesize.cas_cdcgan": scores["cas_cdcgan"]["balanced_accuracy"],
        "synthesize.acc_real": scores["real"]["balanced_accuracy"],
        "synthesize.acc_real_plus_synthetic": scores["real_plus_model"]["balanced_accuracy"],
        "synthesize.acc_real_plus_cdcgan": scores["real_plus_cdcgan"]["balanced_accuracy"],
        "synthesize.acc_real_topup_synthetic": scores["real_topup_model"]["balanced_accuracy"],
        "synthesize.acc_real_topup_cdcgan": scores["real_topup_cdcgan"]["balanced_accuracy"],
        **{f"synthesize.gain_{way}_{name}": paired_gain(scores[f"real_{way}_{name}"]["balanced_accuracy_per_repeat"],
                                                        scores["real"]["balanced_accuracy_per_repeat"])
           for way in ("plus", "topup") for name in ("model", "cdcgan")},
    }
    if dist_inception is not None:
        for name in ("model", "cdcgan", "real_train"):
            out["summary"][f"synthesize.kid_inception_{name}"] = dist_inception[name]["kid_mean_per_class"]
            out["summary"][f"synthesize.fid_inception_{name}"] = dist_inception[name]["fid_mean_per_class"]
    out["per_class"] = {c: {"kid_model": dist["model"]["kid_per_class"][c],
                            "kid_cdcgan": dist["cdcgan"]["kid_per_class"][c],
                            "kid_real_train": dist["real_train"]["kid_per_class"][c],
                            "cas_model": scores["cas_model"]["recall"].get(c),
                            "cas_cdcgan": scores["cas_cdcgan"]["recall"].get(c),
                            "acc_real": scores["real"]["recall"].get(c),
                            "acc_real_plus_synthetic": scores["real_plus_model"]["recall"].get(c),
                            "acc_real_topup_synthetic": scores["real_topup_model"]["recall"].get(c)}
                        for c in classes}
    s = out["summary"]
    out["goals"] = {
        "kid_beats_cdcgan": s["synthesize.kid_model"] < s["synthesize.kid_cdcgan"],
        "cas_beats_cdcgan": s["synthesize.cas_model"] > s["synthesize.cas_cdcgan"],
        "real_plus_synthetic_not_worse": s["synthesize.acc_real_plus_synthetic"] >= s["synthesize.acc_real"],
        "real_topup_synthetic_not_worse": s["synthesize.acc_real_topup_synthetic"] >= s["synthesize.acc_real"],
    }
    return _clean(out)


def top_up_counts(y: np.ndarray, k: int) -> list[int]:
    """Synthetic patches per class for "top-up": each class up to the largest class's count of real patches."""
    have = np.bincount(y, minlength=k)
    return [int(have.max() - h) for h in have]


def paired_gain(augmented, real) -> dict:
    """Gain over real alone, repeat by repeat (the same seed trains both; scores per repeat): mean, standard error."""
    d = np.subtract(augmented, real)
    return {"mean": float(d.mean()), "se": float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else None}


def _clean(value):
    """NaN (a score without enough samples) -> None, so the report stays strict JSON."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value
