"""A small patch classifier: the feature space of FID/KID and the judge of CAS
and augmentation gain. Trained from scratch on model-space patches (any band
count and size), class-balanced batches, flips and quarter turns, a fixed
number of steps so every comparison gets the same budget.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .datasets import augment, balanced_indices


class PatchClassifier(nn.Module):
    def __init__(self, in_channels: int, num_classes: int, width: int = 32, features: int = 128):
        super().__init__()

        def block(a, b):
            return [nn.Conv2d(a, b, 3, padding=1, bias=False), nn.BatchNorm2d(b), nn.ReLU(True)]

        self.body = nn.Sequential(*block(in_channels, width), nn.MaxPool2d(2), *block(width, 2 * width),
                                  nn.MaxPool2d(2), *block(2 * width, 4 * width), nn.MaxPool2d(2),
                                  *block(4 * width, features), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Sequential(nn.Dropout(0.3), nn.Linear(features, num_classes))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def train_classifier(x: np.ndarray, y: np.ndarray, num_classes: int, steps: int = 300, batch_size: int = 64,
                     seed: int = 0, lr: float = 2e-3, width: int = 32, feedback=None) -> PatchClassifier:
    """Fit on (N, C, P, P) model-space patches with labels (N,)."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    net = PatchClassifier(x.shape[1], num_classes, width)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    data, labels = torch.from_numpy(x).float(), torch.from_numpy(y).long()
    idx = balanced_indices(y, steps * batch_size, g)
    net.train()
    for step in range(steps):
        if feedback is not None:
            feedback.check_cancelled()
        b = idx[step * batch_size:(step + 1) * batch_size]
        loss = F.cross_entropy(net(augment(data[b], g)), labels[b])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return net.eval()


@torch.no_grad()
def predict(net: PatchClassifier, x: np.ndarray, batch: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """(predicted labels (N,), features (N, F)) of model-space patches."""
    net.eval()
    preds, feats = [], []
    for i in range(0, len(x), batch):
        t = torch.from_numpy(x[i:i + batch]).float()
        f = net.features(t)
        feats.append(f.numpy())
        preds.append(net.head(f).argmax(1).numpy())
    if not preds:
        linear = net.head[-1]
        assert isinstance(linear, nn.Linear)  # nosec B101  # type narrowing
        return np.zeros(0, np.int64), np.zeros((0, linear.in_features), np.float32)
    return np.concatenate(preds), np.concatenate(feats)


def accuracies(pred: np.ndarray, y: np.ndarray, classes: list[str]) -> dict:
    """Overall accuracy, balanced accuracy (mean recall over classes present) and per-class recall."""
    recall = {c: float((pred[y == i] == i).mean()) for i, c in enumerate(classes) if (y == i).any()}
    return {"accuracy": float((pred == y).mean()) if len(y) else float("nan"),
            "balanced_accuracy": float(np.mean(list(recall.values()))) if recall else float("nan"),
            "recall": recall}
