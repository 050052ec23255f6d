"""Multiscale area attention over a 2-D feature map (Xu et al., ICASSP 2021), after tensor2tensor's
dot_product_area_attention as the public code (lessonxmk/Optimized_attention_for_SER, model.py) calls it.

Input x is a CNN feature map [B, C, H, W] in PyTorch's channels-first layout: C channels (the features),
H = frequency rows, W = time columns (the paper's CNN sees log-Mel [128 mels, 81 frames] -> [B, 80, H, W]).
The map attends to itself with no projections: query = key = value = a cell's C channels. An area is a
rectangle of 1..max_height rows by 1..max_width columns; its key is the mean ("mean") or max ("max") of its
cells, or "sample" (mean + std * N(0, 1) noise while stochastic, tensor2tensor's "sample" mode); its value the
sum ("sum"), mean or max. Each query cell takes softmax over all areas of q . key_area and returns the
weighted sum of area values: the output has the input's shape. Logits are NOT scaled by 1/sqrt(C) in the code
(tensor2tensor's area_temperature = 1); `scaled=True` divides by sqrt(C / heads).
Sums and means come from summed-area tables (integral images), maxima from stride-1 max pooling.
Area order (for the weights): area height, then width, then top-left corner row-major, as tensor2tensor.

Two layouts, the paper's text against its code (the rule of sercore.fidelity: default to the code):
  * "freq-heads-1d" (default, the code): the code hands the channels-last map [B, H, W, C] to a function
    expecting [batch, heads, length, depth], so each frequency row is a separate head, attends only within
    its own row, and areas are 1-D runs of 1..max_width time steps: max_height has no effect.
  * "2d" (the paper's description): all H * W cells attend over all rectangles of the whole map.
The paper's reported results came from the code, so the code's layout is the default and the paper
profile uses it; "2d" is the variant to test the paper's stated method. Likewise the code applies dropout
(rate 0.5) to the area weights at test time too (tensor2tensor is called with training=True):
`dropout_at_test=True` by default, and that same flag keeps the "sample" key noise on at test.
`heads` splits the channels into groups attending independently (1 in the paper).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from sercore.attention.base import ModeSwitch

LAYOUTS = ("freq-heads-1d", "2d")
KEY_MODES = ("mean", "max", "sample")
VALUE_MODES = ("sum", "mean", "max")


def area_shapes(height: int, width: int, max_height: int, max_width: int) -> list[tuple[int, int]]:
    """The (area height, area width) pairs that fit in a height x width map, in area order."""
    return [(h, w) for h in range(1, min(max_height, height) + 1) for w in range(1, min(max_width, width) + 1)]


def area_list(height: int, width: int, max_height: int, max_width: int) -> list[tuple[int, int, int, int]]:
    """Every area as (top, left, area height, area width), in the order of the attention weights' last axis."""
    return [(i, j, h, w) for h, w in area_shapes(height, width, max_height, max_width)
            for i in range(height - h + 1) for j in range(width - w + 1)]


def area_sums(x: torch.Tensor, shapes) -> torch.Tensor:
    """[N, c, H, W] -> [N, c, areas]: sum over every area, from one summed-area table."""
    n, c, height, width = x.shape
    table = F.pad(x.cumsum(2).cumsum(3), (1, 0, 1, 0))  # table[.., i, j] = sum of x[.., :i, :j]
    sums = []
    for h, w in shapes:
        r, s = height + 1 - h, width + 1 - w
        area = table[..., h:, w:] - table[..., :r, w:] - table[..., h:, :s] + table[..., :r, :s]
        sums.append(area.reshape(n, c, -1))
    return torch.cat(sums, dim=2)


def area_sizes(height: int, width: int, shapes, like: torch.Tensor) -> torch.Tensor:
    """[areas]: the number of cells of each area."""
    sizes = [torch.full(((height - h + 1) * (width - w + 1),), h * w) for h, w in shapes]
    return torch.cat(sizes).to(like)


def area_maxima(x: torch.Tensor, shapes) -> torch.Tensor:
    """[N, c, H, W] -> [N, c, areas]: maximum over every area (stride-1 max pooling per area shape)."""
    n, c = x.shape[:2]
    return torch.cat([F.max_pool2d(x, (h, w), stride=1).reshape(n, c, -1) for h, w in shapes], dim=2)


def area_attention(x: torch.Tensor, max_height: int, max_width: int, key: str = "mean", value: str = "sum",
                   scaled: bool = False, dropout: float = 0.0, stochastic: bool = False):
    """Every cell of each map in x [N, c, H, W] attends over its areas.

    Returns (output [N, c, H, W], weights [N, H*W, areas] before dropout). `stochastic` turns on the
    dropout and the "sample" key noise."""
    n, c, height, width = x.shape
    shapes = area_shapes(height, width, max_height, max_width)
    sums = None if key == value == "max" else area_sums(x, shapes)
    sizes = area_sizes(height, width, shapes, x)
    if key == "max":
        keys = area_maxima(x, shapes)
    else:
        keys = sums / sizes
        if key == "sample" and stochastic:
            variance = area_sums(x * x, shapes) / sizes - keys * keys
            keys = keys + (variance.abs() + 1e-6).sqrt() * torch.randn_like(keys)
    values = {"sum": lambda: sums, "mean": lambda: sums / sizes, "max": lambda: area_maxima(x, shapes)}[value]()
    cells = x.reshape(n, c, height * width).transpose(1, 2)  # [N, H*W, c]
    logits = cells @ keys
    if scaled:
        logits = logits / math.sqrt(c)
    weights = logits.softmax(dim=-1)
    out = F.dropout(weights, dropout, training=stochastic) @ values.transpose(1, 2)
    return out.transpose(1, 2).reshape(n, c, height, width), weights


class AreaAttention(ModeSwitch):
    """Area attention on a feature map [B, dim, H, W] (H frequency, W time); see the module docstring.

    forward(x, return_weights=False) -> output [B, dim, H, W] (and the weights, see attention_weights).
    mode (MODES, as every mixer): area attention has one implementation, PyTorch (summed-area tables, max
    pooling), and no kernel of its own, so "auto", "reference" and "fused" all run it; "fused" still needs
    CUDA input (or TRITON_INTERPRET=1), as everywhere, so that it means "the GPU path" for every mixer."""

    def __init__(self, dim: int, heads: int = 1, max_height: int = 3, max_width: int = 3,
                 layout: str = "freq-heads-1d", key: str = "mean", value: str = "sum", scaled: bool = False,
                 dropout: float = 0.5, dropout_at_test: bool = True, mode: str = "auto"):
        super().__init__(mode)
        if dim % heads:
            raise ValueError(f"AreaAttention: dim={dim} is not divisible by heads={heads}")
        if layout not in LAYOUTS:
            raise ValueError(f"AreaAttention: layout must be one of {LAYOUTS}, got {layout!r}")
        if key not in KEY_MODES:
            raise ValueError(f"AreaAttention: key must be one of {KEY_MODES}, got {key!r}")
        if value not in VALUE_MODES:
            raise ValueError(f"AreaAttention: value must be one of {VALUE_MODES}, got {value!r} "
                             "(tensor2tensor has no 'sample' value mode)")
        if max_height < 1 or max_width < 1:
            raise ValueError(f"AreaAttention: max_height and max_width must be >= 1, got {max_height}, {max_width}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"AreaAttention: dropout must be in [0, 1), got {dropout}")
        self.dim, self.heads = dim, heads
        self.max_height, self.max_width, self.layout = max_height, max_width, layout
        self.key, self.value, self.scaled = key, value, scaled
        self.dropout, self.dropout_at_test = dropout, dropout_at_test

    def _run(self, x: torch.Tensor):
        self.use_fused(x)  # only for its check: "fused" off CUDA is an error; every mode runs the code below
        if x.dim() != 4 or x.shape[1] != self.dim:
            raise ValueError(f"AreaAttention: expected a feature map [B, C={self.dim}, H, W], "
                             f"got {tuple(x.shape)}")
        b, _, height, width = x.shape
        c = self.dim // self.heads
        maps = x.reshape(b * self.heads, c, height, width)
        if self.layout == "freq-heads-1d":
            # Each frequency row becomes its own height-1 map, so areas can only run along time.
            maps = maps.permute(0, 2, 1, 3).reshape(b * self.heads * height, c, 1, width)
        stochastic = self.training or self.dropout_at_test
        out, weights = area_attention(maps, self.max_height, self.max_width, self.key, self.value,
                                      self.scaled, self.dropout, stochastic)
        if self.layout == "freq-heads-1d":
            out = out.reshape(b * self.heads, height, c, width).transpose(1, 2)
            weights = weights.reshape(b, self.heads, height, width, -1)
        else:
            weights = weights.reshape(b, self.heads, height * width, -1)
        return out.reshape(b, self.dim, height, width), weights

    def forward(self, x: torch.Tensor, return_weights: bool = False):
        out, weights = self._run(x)
        return (out, weights) if return_weights else out

    def attention_weights(self, x: torch.Tensor) -> torch.Tensor:
        """Softmax weights over areas (before dropout) for visualisation: "2d" -> [B, heads, H*W, areas] with
        areas as area_list(H, W, max_height, max_width); "freq-heads-1d" -> [B, heads, H, W, areas of one
        row] with areas as area_list(1, W, 1, max_width)."""
        return self._run(x)[1]

    def areas(self, height: int, width: int) -> list[tuple[int, int, int, int]]:
        """(top, left, height, width) of each area along the weights' last axis, for a height x width map."""
        if self.layout == "freq-heads-1d":
            return area_list(1, width, 1, self.max_width)
        return area_list(height, width, self.max_height, self.max_width)
