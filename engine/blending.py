"""Where the tile pipeline's arithmetic happens: on the host (numpy, spread over the cores) or on the
model's device (torch), beside the model.

Both hold the accumulator of run_tiles: one row of tiles high, one raster wide, the weighted sum of
the model outputs and the sum of the weights. `HostBlend` keeps it in numpy; every tile's output
comes down from the device first. `DeviceStage` keeps it on the model's device, and does the
stretch of the input bands and, once rows are finished, the division, the stretch back into band
values and the rounding into the output's data type there too: raw band values go up, finished
rows in the output's type come down (on CUDA through pinned host buffers). The same float32
operations in the same order on both sides (no fused multiply-adds), so for a given device the
two write the same pixels: tests compare them on the CPU.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .errors import InputError
from .parallel import in_parts
from .windows import tile_weights

if TYPE_CHECKING:
    from .scaling import BandScaling

BLENDS = ("auto", "host", "device")  # TileOptions.blend: auto is the device on a CUDA GPU, else the host
CHUNK = 2048  # finished rows go to the sink in column chunks, so its temporaries stay small

# a tile of a batch: its output columns, its output (channels, rows, cols), the neighbours it has
# (top, bottom, left, right), which choose its weights
Tile = tuple[slice, Any, tuple[bool, bool, bool, bool]]


def on_device(blend: str, device: torch.device) -> bool:
    if blend not in BLENDS:
        raise InputError(f"blend must be one of {', '.join(BLENDS)}, got {blend!r}")
    return device.type == "cuda" if blend == "auto" else blend == "device"


class HostBlend:
    """The accumulator in numpy; each part of the work split over the cores by rows (in_parts)."""

    def __init__(self, channels: int, rows: int, cols: int, tile: int, overlap: int):
        self.acc = np.zeros((channels, rows, cols), np.float32)
        self.wsum = np.zeros((rows, cols), np.float32)
        self.tile, self.overlap = tile, overlap
        self._weights: dict[tuple[bool, ...], np.ndarray] = {}
        self._scratch = np.empty((channels, tile, tile), np.float32)

    def weights(self, sides: tuple[bool, ...]) -> np.ndarray:
        if sides not in self._weights:
            self._weights[sides] = tile_weights(self.tile, self.overlap, *sides)
        return self._weights[sides]

    def add(self, tiles: list[Tile]) -> None:
        acc, wsum, scratch = self.acc, self.wsum, self._scratch
        parts = [(cs, y, self.weights(sides)) for cs, y, sides in tiles]

        def blend(lo, hi):  # rows lo:hi of every tile, in order: the same sums however split
            for cs, y, w in parts:
                acc[:, lo:hi, cs] += np.multiply(y[:, lo:hi], w[lo:hi], out=scratch[:, lo:hi])
                wsum[lo:hi, cs] += w[lo:hi]

        in_parts(blend, self.tile)

    def chunks(self, n: int, width_out: int, valid_in) -> Iterator[tuple[np.ndarray, np.ndarray, int]]:
        """Model-space values of the first n rows, column chunk by chunk: (values, covered, first
        column); `valid_in(c0, c1)` the input's validity at output scale."""
        acc, wsum = self.acc, self.wsum
        for c0 in range(0, width_out, CHUNK):
            c1 = min(width_out, c0 + CHUNK)
            values = np.empty((acc.shape[0], n, c1 - c0), np.float32)
            covered = np.empty((n, c1 - c0), bool)

            def divide(lo, hi, c0=c0, c1=c1, values=values, covered=covered):
                w = wsum[lo:hi, c0:c1]
                np.greater(w, 0, out=covered[lo:hi])
                np.divide(acc[:, lo:hi, c0:c1], np.where(covered[lo:hi], w, 1.0), out=values[:, lo:hi])

            # the writer thread is compressing the previous block row now: on two cores, split, the null model
            # lost 0.03 s of 1.1 s
            in_parts(divide, n, spare=1)
            yield values, covered & valid_in(c0, c1), c0

    def shift(self, rows: int) -> None:
        acc, wsum = self.acc, self.wsum
        acc[:, :-rows] = acc[:, rows:]
        acc[:, -rows:] = 0
        wsum[:-rows] = wsum[rows:]
        wsum[-rows:] = 0


# numpy types torch has only in name (uint16/uint32: few kernels, none before torch 2.3): they travel as the
# signed type of their size, bit for bit, and are widened and masked back on the device
UNSIGNED = {np.dtype("uint16"): (np.int16, torch.int32, 0xFFFF),
            np.dtype("uint32"): (np.int32, torch.int64, 0xFFFFFFFF)}
# output types torch casts to on the device; uint16 comes down as int32 (exact); the other types as the
# rounded, clipped float32 values the host casts, as scaling.cast_to_dtype does
CAST_ON_DEVICE = {np.dtype("uint8"): torch.uint8, np.dtype("int8"): torch.int8, np.dtype("int16"): torch.int16,
                  np.dtype("uint16"): torch.int32}


@functools.cache
def _torch_dtype(dtype: np.dtype) -> torch.dtype | None:
    """torch's twin of a numpy dtype, or None where this torch lacks it."""
    try:
        return torch.from_numpy(np.zeros(0, dtype)).dtype
    except TypeError:
        return None


class DeviceStage:
    """The input stretch, the forward pass, the accumulator and the output stretch and cast, all on
    `device` (module docstring). `in_scaling`/`clip`: the model's input stretch (None: the batches are
    model-space already); `out_scaling`/`out_dtype`: finished rows come down as band values of that
    type (rounded and clipped as scaling.cast_to_dtype does), or, with out_dtype None, as model-space
    float32 (for a sink that post-processes them)."""

    def __init__(self, module: torch.nn.Module, device: torch.device, in_scaling: BandScaling | None = None,
                 clip: float | None = None, out_scaling: BandScaling | None = None, out_dtype: str | None = None):
        module.eval()
        self.module, self.device = module, device
        self.pinned = device.type == "cuda"
        self._buffers: dict[str, torch.Tensor] = {}
        self._turn: dict[str, int] = {}
        self._copied: dict[str, torch.cuda.Event] = {}
        self.clip = clip
        self.in_coef = None if in_scaling is None else self._coefficients(in_scaling, scale=True)
        self.out_coef = None if out_scaling is None or out_dtype is None else self._coefficients(out_scaling)
        self.out_dtype = None if out_dtype is None else np.dtype(out_dtype)

    def begin(self, channels: int, rows: int, cols: int, tile: int, overlap: int) -> DeviceStage:
        """An empty accumulator of (channels, rows, cols) for output tiles of `tile` px overlapping by
        `overlap` (run_tiles calls this)."""
        self.tile, self.overlap = tile, overlap
        self.acc = torch.zeros((channels, rows, cols), dtype=torch.float32, device=self.device)
        self.wsum = torch.zeros((rows, cols), dtype=torch.float32, device=self.device)
        self._weights: dict[tuple[bool, ...], torch.Tensor] = {}
        return self

    def _coefficients(self, scaling: BandScaling, scale: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """(low, 2 / span) for the input stretch, (low, span / 2) for the output's: float32, computed as
        scaling.BandScaling computes them, shaped to broadcast over (bands, rows, cols)."""
        low, span = scaling.coefficients(3)
        factor = 2.0 / span if scale else 0.5 * span
        return (torch.from_numpy(low).to(self.device), torch.from_numpy(np.asarray(factor, np.float32)).to(self.device))

    # the way up and down ---------------------------------------------------------------------------------
    def _up(self, array: np.ndarray, name: str) -> torch.Tensor:
        """`array` on the device. On CUDA the copy runs from one of two pinned buffers taken in turn and
        returns at once, so the host reads and stacks the next batch while the GPU works on this one; a
        buffer is refilled only once its previous copy is done (an event recorded after it)."""
        unsigned = UNSIGNED.get(array.dtype)
        if unsigned is not None:
            array = array.view(unsigned[0])
        dtype = _torch_dtype(array.dtype)
        if dtype is None:  # any other type torch lacks (uint64): float32 on the host, as the host stretch does
            array, dtype = array.astype(np.float32), torch.float32
        if not self.pinned:  # on the CPU the tensor shares the caller's array, which the stretch then overwrites
            return torch.from_numpy(np.ascontiguousarray(array)).to(self.device)
        self._turn[name] = slot = 1 - self._turn.get(name, 1)
        key = f"{name}{slot}"
        if key in self._copied:
            self._copied[key].synchronize()
        buf = self._pinned(key, array.shape, dtype)
        buf.numpy()[...] = array
        on_device = buf.to(self.device, non_blocking=True)
        event = self._copied[key] = torch.cuda.Event()
        event.record(torch.cuda.current_stream(self.device))
        return on_device

    def _down(self, named: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
        """Host copies of the tensors, by name, after one wait; on CUDA each lies in a pinned buffer of its
        name, valid until the next call."""
        if not self.pinned:
            return {name: tensor.cpu().numpy() for name, tensor in named.items()}
        bufs = {}
        for name, tensor in named.items():
            bufs[name] = self._pinned(name, tensor.shape, tensor.dtype)
            bufs[name].copy_(tensor, non_blocking=True)
        torch.cuda.current_stream(self.device).synchronize()
        return {name: buf.numpy() for name, buf in bufs.items()}

    def _pinned(self, name: str, shape, dtype: torch.dtype) -> torch.Tensor:
        """The first elements of a pinned buffer kept for the largest request so far (page-locked memory
        is slow to allocate and stays with the process: one per name, not one per shape)."""
        size = int(np.prod(shape))
        buf = self._buffers.get(name)
        if buf is None or buf.dtype != dtype or buf.numel() < size:
            buf = self._buffers[name] = torch.empty(size, dtype=dtype, pin_memory=True)
        return buf[:size].view(tuple(shape))

    # the steps of run_tiles -----------------------------------------------------------------------------
    def forward(self, batch: np.ndarray, valid: np.ndarray | None) -> torch.Tensor:
        """(B, bands, T, T) raw band values (or model-space floats without an input stretch) and their
        (B, T, T) validity -> the model's output on the device, float32."""
        with torch.inference_mode():
            x = self._up(batch, "in")
            unsigned = UNSIGNED.get(batch.dtype)
            if unsigned is not None:  # it travelled as the signed type of its size
                x = x.to(unsigned[1]).bitwise_and_(unsigned[2])
            if self.in_coef is not None:
                low, factor = self.in_coef
                x = x.to(torch.float32)  # the same float32 steps as BandScaling.to_model
                x -= low
                x *= factor
                x -= 1.0
                if self.clip is not None:
                    x.clamp_(-self.clip, self.clip)
            if valid is not None:  # invalid pixels enter the model as mid-grey, as on the host
                x.masked_fill_(~self._up(valid, "valid")[:, None], 0.0)
            return self.module(x).float()

    def weights(self, sides: tuple[bool, ...]) -> torch.Tensor:
        if sides not in self._weights:
            w = tile_weights(self.tile, self.overlap, *sides)
            self._weights[sides] = torch.from_numpy(w).to(self.device)
        return self._weights[sides]

    def add(self, tiles: list[Tile]) -> None:
        with torch.inference_mode():
            for cs, y, sides in tiles:  # in order: the same sums as HostBlend
                w = self.weights(sides)
                self.acc[:, :, cs] += y * w
                self.wsum[:, cs] += w

    def chunks(self, n: int, width_out: int, valid_in) -> Iterator[tuple[np.ndarray, np.ndarray, int]]:
        """As HostBlend.chunks, but the values are band values of the output type when the stage has an
        output stretch (module docstring)."""
        for c0 in range(0, width_out, CHUNK):
            c1 = min(width_out, c0 + CHUNK)
            with torch.inference_mode():
                w = self.wsum[:n, c0:c1]
                covered = w > 0
                values = self.acc[:, :n, c0:c1] / torch.where(covered, w, 1.0)
                if self.out_coef is not None:
                    values = self._to_output(values)
                host = self._down({"covered": covered, "out": values})
            # on CUDA the values lie in a pinned buffer that the next chunk reuses: a sink uses each chunk at once
            yield host["out"], host["covered"] & valid_in(c0, c1), c0

    def _to_output(self, values: torch.Tensor) -> torch.Tensor:
        """Model values -> band values (BandScaling.from_model) -> the output type (cast_to_dtype)."""
        assert self.out_coef is not None and self.out_dtype is not None  # nosec B101  # only called with both
        low, half_span = self.out_coef
        values += 1.0
        values *= half_span
        values += low
        dt = self.out_dtype
        if dt.kind in "ui":
            info = np.iinfo(dt)
            values.round_()  # half to even, as np.rint
            values.clamp_(float(info.min), float(info.max))
            if dt in CAST_ON_DEVICE:
                return values.to(CAST_ON_DEVICE[dt])
        return values

    def shift(self, rows: int) -> None:
        """Everything up by `rows`, zeros below: block by block from the top, each copy from rows below
        those it writes, so no temporary the size of the accumulator (on a GPU it may be gigabytes)."""
        with torch.inference_mode():
            height = self.wsum.shape[0]
            for top in range(0, height - rows, rows):
                end = min(top + rows, height - rows)
                self.acc[:, top:end] = self.acc[:, top + rows:end + rows]
                self.wsum[top:end] = self.wsum[top + rows:end + rows]
            self.acc[:, -rows:] = 0
            self.wsum[-rows:] = 0
