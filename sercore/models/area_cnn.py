"""Area-attention CNN on log10-mel segments (Xu et al., ICASSP 2021; public code
lessonxmk/Optimized_attention_for_SER, model.py, class AACNN).

    segment [B, 1, 128 mels, 81 frames]
    -> conv 16@(10, 2) | conv 16@(2, 8)   two parallel branches, 'same' padding, BN + ReLU each
    -> concatenate along frequency        [B, 16, 256, 81]
    -> conv 32@3x3, BN, ReLU, max-pool 2  [B, 32, 128, 40]
    -> conv 48@3x3, BN, ReLU, max-pool 2  [B, 48, 64, 20]
    -> conv 64@3x3, BN, ReLU -> conv 80@3x3, BN, ReLU   [B, 80, 64, 20]
    -> area attention (sercore.attention "area", same shape) -> flatten -> Linear(102400, n_classes)

Shapes: 'same' padding keeps both branches at 128 x 81, so they can be stacked along the frequency axis
(the code concatenates on axis 1 of a channels-last [B, mels, frames, C] map, i.e. frequency); for even kernels
the extra padding row/column goes after, as in TensorFlow. Max-pooling floors odd sizes (81 -> 40).
The code's Dense layer has a softmax; here the model returns logits and the loss applies the softmax.
Its utterance decision is the mean of the segments' softmax outputs: `utterance_scores`.
"""

from __future__ import annotations

import torch
from torch import nn

from sercore import attention
from sercore.models.batch import require
from sercore.models.heads import classification_loss


def same_padding(kernel: tuple[int, int]) -> nn.ZeroPad2d:
    """TensorFlow's 'same' padding: k - 1 zeros per axis, the odd one after (right / bottom)."""
    (kh, kw) = kernel
    return nn.ZeroPad2d(((kw - 1) // 2, kw // 2, (kh - 1) // 2, kh // 2))


def conv_bn_relu(in_channels: int, out_channels: int, kernel: tuple[int, int]) -> nn.Sequential:
    return nn.Sequential(same_padding(kernel), nn.Conv2d(in_channels, out_channels, kernel),
                         nn.BatchNorm2d(out_channels), nn.ReLU())


def utterance_scores(probs: torch.Tensor, utt_index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean segment probabilities per utterance: probs [S, C], utt_index [S] ->
    (utterance ids [U] in ascending order, scores [U, C])."""
    if probs.shape[0] != utt_index.shape[0]:
        raise ValueError(f"utterance_scores: {probs.shape[0]} segment rows but {utt_index.shape[0]} indices")
    ids, slot = torch.unique(utt_index, sorted=True, return_inverse=True)
    sums = probs.new_zeros(len(ids), probs.shape[1]).index_add(0, slot, probs)
    counts = torch.bincount(slot, minlength=len(ids)).to(probs.dtype)
    return ids, sums / counts[:, None]


class AreaCNN(nn.Module):
    """Two-branch CNN + area attention over fixed-size log10-mel segments; logits per segment.

    Options: n_mels (128), frames (81 per 2 s segment), n_classes (4), area_options (dict for
    sercore.attention.build("area", 80, area_heads, ...), e.g. {"max_height": 4, "max_width": 4}), area_heads.
    Input: batch["speech"] as [B, 1, n_mels, frames], or [B, frames, n_mels] (the contracts' [B, T, F] layout,
    transposed here)."""

    @staticmethod
    def inputs_of(options: dict) -> dict:
        """`inputs` of the model these options build (sercore.models.model_inputs: known without building it)."""
        return {"speech": "logmel128-segments", "text": False}

    @staticmethod
    def mixers_of(options: dict) -> tuple[str, ...]:
        """The sercore.attention names this model builds by registry name (the run's code key needs them)."""
        return ("area",)

    def __init__(self, *, n_mels: int = 128, frames: int = 81, n_classes: int = 4,
                 area_options: dict | None = None, area_heads: int = 1):
        super().__init__()
        self.inputs = self.inputs_of({})
        self.n_mels, self.frames = n_mels, frames
        self.branch_a = conv_bn_relu(1, 16, (10, 2))
        self.branch_b = conv_bn_relu(1, 16, (2, 8))
        self.trunk = nn.Sequential(
            conv_bn_relu(16, 32, (3, 3)), nn.MaxPool2d(2),
            conv_bn_relu(32, 48, (3, 3)), nn.MaxPool2d(2),
            conv_bn_relu(48, 64, (3, 3)), conv_bn_relu(64, 80, (3, 3)))
        self.area_attention = attention.build("area", 80, area_heads, **dict(area_options or {}))
        self.map_shape = (80, (2 * n_mels) // 4, frames // 4)
        self.classifier = nn.Linear(self.map_shape[0] * self.map_shape[1] * self.map_shape[2], n_classes)

    def _segments(self, batch: dict) -> torch.Tensor:
        x = require(batch, "speech", "area-cnn", f"[B, 1, {self.n_mels}, {self.frames}] log10-mel segments")
        if x.dim() == 3:
            x = x.transpose(1, 2)[:, None]
        if tuple(x.shape[1:]) != (1, self.n_mels, self.frames):
            raise ValueError(f"area-cnn expects segments [B, 1, {self.n_mels}, {self.frames}] "
                             f"(or [B, {self.frames}, {self.n_mels}]), got {tuple(batch['speech'].shape)}; "
                             "set n_mels / frames to match the features")
        return x

    def forward(self, batch: dict) -> dict:
        x = self._segments(batch)
        x = torch.cat([self.branch_a(x), self.branch_b(x)], dim=2)  # dim 2 = frequency
        x = self.area_attention(self.trunk(x))
        return {"logits": self.classifier(x.flatten(1))}

    def loss(self, batch: dict, outputs: dict, class_weights: torch.Tensor | None = None) -> torch.Tensor:
        return classification_loss(outputs["logits"], require(batch, "label", "area-cnn", "[B] class index"),
                                   class_weights)

    @staticmethod
    def utterance_scores(probs: torch.Tensor, utt_index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return utterance_scores(probs, utt_index)
