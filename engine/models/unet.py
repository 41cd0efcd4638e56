"""U-Net generator of pix2pix (Isola et al., 2017), width and depth configurable.

unet_256 of the paper is UNet(ngf=64, depth=8); a CPU-sized model shares the
code with a smaller ngf. Input and output are (N, C, H, W) in [-1, 1], with
H and W multiples of 2**depth. BatchNorm, so in eval mode every tile is
normalised with the same running statistics and neighbouring tiles agree.

`upsample` "transpose" is the paper's decoder (4x4 transposed convolutions of
stride 2), whose uneven overlap paints a periodic checkerboard into the output
(Odena et al., 2016); "resize" doubles the size bilinearly and then convolves
(3x3), which has no such pattern. Model files without the parameter are
"transpose", as they were made.

`classes` > 0 makes a map generator of a legend's classes: the last layer
scores each class (logits) instead of drawing colours, and the output is
the colour of the best-scoring class, taken from the `palette` buffer (one
RGB row per class in [-1, 1], stored with the weights). Its outputs are
exactly the legend's colours, so a decoded map is the argmax of the class
scores; `forward(x, logits=True)` gives the scores for training.
"""

from __future__ import annotations

import torch
from torch import nn

UPSAMPLES = ("transpose", "resize")


def up_layers(in_width: int, out_width: int, bias: bool, upsample: str) -> list[nn.Module]:
    """The layers that double the size in a decoder block."""
    if upsample == "transpose":
        return [nn.ConvTranspose2d(in_width, out_width, 4, 2, 1, bias=bias)]
    if upsample == "resize":
        return [nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                nn.Conv2d(in_width, out_width, 3, 1, 1, bias=bias)]
    raise ValueError(f"upsample must be one of {', '.join(UPSAMPLES)}, got {upsample!r}")


class UNet(nn.Module):
    palette: torch.Tensor  # with classes: (classes, out_channels) colours in [-1, 1], a buffer

    def __init__(self, in_channels: int, out_channels: int, ngf: int = 64, depth: int = 8,
                 max_mult: int = 8, dropout: float = 0.5, upsample: str = "transpose", classes: int = 0):
        super().__init__()
        if depth < 2:
            raise ValueError("UNet depth must be at least 2")
        if classes == 1 or classes < 0:
            raise ValueError("a UNet of classes scores at least 2 of them (0: a colour generator)")
        self.depth, self.classes = depth, classes
        if classes:
            self.register_buffer("palette", torch.zeros(classes, out_channels))
        widths = [ngf * min(2 ** i, max_mult) for i in range(depth)]  # encoder outputs

        self.down = nn.ModuleList()
        for i, width in enumerate(widths):
            layers: list[nn.Module]
            if i == 0:  # outermost: no activation before, no norm after
                layers = [nn.Conv2d(in_channels, width, 4, 2, 1)]
            else:
                layers = [nn.LeakyReLU(0.2, True), nn.Conv2d(widths[i - 1], width, 4, 2, 1, bias=False)]
                if i < depth - 1:  # innermost (1x1 at unet_256) has no norm
                    layers.append(nn.BatchNorm2d(width))
            self.down.append(nn.Sequential(*layers))

        self.up = nn.ModuleList()
        for i in reversed(range(depth)):
            # innermost takes only its own encoder output; the others also the skip
            in_width = widths[i] if i == depth - 1 else 2 * widths[i]
            if i == 0:
                scores = classes or out_channels
                layers = [nn.ReLU(True), *up_layers(in_width, scores, True, upsample)]
                if not classes:
                    layers.append(nn.Tanh())
            else:
                layers = [nn.ReLU(True), *up_layers(in_width, widths[i - 1], False, upsample),
                          nn.BatchNorm2d(widths[i - 1])]
                # pix2pix: dropout in the ngf*8 blocks between level 4 and the innermost
                if dropout > 0 and 4 <= i < depth - 1:
                    layers.append(nn.Dropout(dropout))
            self.up.append(nn.Sequential(*layers))

    @property
    def multiple(self) -> int:
        """Tile sizes must be multiples of this."""
        return 2 ** self.depth

    def forward(self, x: torch.Tensor, logits: bool = False) -> torch.Tensor:
        """Colours (N, out_channels, H, W) in [-1, 1]; with `classes` and `logits`, the class scores."""
        x = self.scores(x)
        if not self.classes or logits:
            return x
        palette = self.palette.to(x.dtype)
        return palette[x.argmax(1)].permute(0, 3, 1, 2)

    def render(self, logits: torch.Tensor) -> torch.Tensor:
        """Soft colours (N, out_channels, H, W): the palette weighted by the class probabilities, the
        differentiable map a discriminator judges in training."""
        probs = torch.softmax(logits.float(), dim=1)
        return torch.einsum("nkhw,kc->nchw", probs, self.palette.float())

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
        skips.pop()  # the innermost output is x itself
        for i, block in enumerate(self.up):
            if i > 0:
                x = torch.cat([x, skips.pop()], dim=1)
            x = block(x)
        return x
