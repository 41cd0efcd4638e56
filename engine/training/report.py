"""Training reports: loss curves and sample grids as PNG, metrics as JSON."""

from __future__ import annotations

import datetime
import json
import shlex
import sys
from pathlib import Path
from typing import Any

import numpy as np

from ..fileio import atomic_path


def write_json(path: Path, data: Any) -> None:
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        json.dump(data, f, indent=1, default=float)


def plot_history(history: list[dict[str, float]], path: Path, title: str) -> None:
    """One panel of training losses and one of validation metrics, per epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not history:
        return
    epochs = [h["epoch"] for h in history]
    losses = sorted(k for k in history[0] if k.startswith("loss_"))
    metrics = sorted(k for k in history[0] if k.startswith("val_"))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for key in losses:
        axes[0].plot(epochs, [h[key] for h in history], label=key[5:])
    axes[0].set_title("training losses")
    axes[0].set_xlabel("epoch")
    axes[0].set_yscale("log")
    for key in metrics:
        axes[1].plot(epochs, [h[key] for h in history], label=key[4:])
    axes[1].set_title("validation (held-out blocks)")
    axes[1].set_xlabel("epoch")
    for ax in axes:
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def to_display(image: np.ndarray) -> np.ndarray:
    """(C, H, W) model-space values in [-1, 1] -> (H, W, 3) uint8 for viewing."""
    rgb = image[:3] if image.shape[0] >= 3 else np.repeat(image[:1], 3, axis=0)
    return (np.clip((rgb + 1) * 127.5, 0, 255)).astype(np.uint8).transpose(1, 2, 0)


def save_grid(rows: list[list[np.ndarray]], path: Path, gap: int = 4) -> None:
    """Save rows of (H, W, 3) uint8 images as one PNG, e.g. input | prediction | target."""
    from PIL import Image

    h, w = rows[0][0].shape[:2]
    cols = max(len(r) for r in rows)
    canvas = np.full((len(rows) * (h + gap) - gap, cols * (w + gap) - gap, 3), 255, np.uint8)
    for i, row in enumerate(rows):
        for j, img in enumerate(row):
            canvas[i * (h + gap):i * (h + gap) + h, j * (w + gap):j * (w + gap) + w] = img
    Image.fromarray(canvas).save(path)


def update_report(section: str, values: dict, path: Path, command: str | None = None) -> None:
    """Write one section of a quality report, stamped with the date and the command that measured it
    (default: this process's `python -m engine ...` command line)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    report = json.loads(path.read_text()) if path.exists() else {}
    command = command or "python -m engine " + shlex.join(sys.argv[1:])
    values = dict(values, date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                  command=command)
    report[section] = values
    write_json(path, report)


# what each picture of a training report shows, for the page's captions
_PICTURES = (("loss_curves.png", "Training losses and validation metrics per epoch"),
             ("samples.png", "Samples on held-out data: each row one example (input | model | truth, or one row "
                             "per class)"))


def write_metrics(report: Path, data: dict, title: str) -> None:
    """metrics.json and the report's page, index.html, written again at each epoch and at the end."""
    write_json(report / "metrics.json", data)
    write_html(report, data, title)


def write_html(report: Path, data: dict, title: str) -> Path:
    """index.html: one page tying a training report together: the final metrics (or the last epoch's
    while training runs), the curves and samples beside it, and the metrics of every epoch."""
    import html

    def cell(value: Any) -> str:
        return f"{value:.4g}" if isinstance(value, float) else html.escape(str(value))

    history = data.get("history") or []
    final = data.get("final") or (history[-1] if history else {})
    state = "finished" if data.get("final") or data.get("classes") else "in progress"
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             "<style>body{font-family:sans-serif;margin:2em;max-width:70em}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:.2em .6em;text-align:right}img{max-width:100%}</style></head>",
             f"<body><h1>{html.escape(title)}</h1>",
             f"<p>Training {state}, {len(history)} epoch(s); written "
             f"{datetime.datetime.now().isoformat(timespec='seconds')}. Files: "
             + ", ".join(f"<a href='{p.name}'>{p.name}</a>" for p in sorted(report.iterdir())
                         if p.suffix in (".json", ".png")) + "</p>"]
    if final:
        rows = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{cell(v)}</td></tr>" for k, v in final.items()
                       if not isinstance(v, (dict, list)))
        parts.append(f"<h2>{'Final metrics' if data.get('final') else 'Last epoch'}</h2><table>{rows}</table>")
    for name, caption in _PICTURES:
        if (report / name).exists():
            parts.append(f"<h2>{caption}</h2><img src='{name}' alt='{name}'>")
    if history:
        keys = list(dict.fromkeys(k for entry in history for k in entry))
        head = "".join(f"<th>{html.escape(k)}</th>" for k in keys)
        body = "".join("<tr>" + "".join(f"<td>{cell(entry.get(k, ''))}</td>" for k in keys) + "</tr>"
                       for entry in history)
        parts.append(f"<h2>Every epoch</h2><table><tr>{head}</tr>{body}</table>")
    parts.append("</body></html>\n")
    path = report / "index.html"
    with atomic_path(path) as tmp:
        Path(tmp).write_text("\n".join(parts), encoding="utf-8")
    return path
