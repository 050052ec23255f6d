"""Self-attention + multitask SER (Li, Zhao, Kawahara, Interspeech 2019): spectrogram -> CNN -> BLSTM ->
self-attention pooling, with an emotion head and an auxiliary gender head.

There is no official code and the paper gives only the outline, so the sizes are this library's choices
(all options): two conv blocks [3x3 conv, BN, ReLU, 2x2 max-pool] with 32 and 64 channels on the log-Mel
[B, 1, T, F], the pooled frequency bins folded into the features, a one-layer BLSTM of 128 units per
direction, Lin et al.'s additive attention pooling (one hop), dropout, and two Linear heads.

Padding: inputs are zeroed at padded frames, every conv block's output is zeroed past the sample's
pooled length, and the BLSTM runs on packed sequences, so a padded sample gives what it gives alone
(in eval mode). Loss = CE(emotion) + gender_weight * CE(gender); gender -1 (unknown) is ignored, and a
batch with no known gender contributes an exact 0 for that term.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from sercore.models.batch import check_dim, mask_for, prefix_lengths, require
from sercore.models.heads import classification_loss
from sercore.models.pooling import AdditiveAttentionPooling


class MultitaskModel(nn.Module):
    """CNN-BLSTM-attention with emotion and gender heads; outputs logits [B, C] and gender_logits [B, 2].

    Options: speech_dim (log-Mel bands), n_classes, channels (conv channels per block), lstm_hidden,
    attention_dim, dropout, gender_weight (lambda)."""

    @staticmethod
    def inputs_of(options: dict) -> dict:
        """`inputs` of the model these options build (sercore.models.model_inputs: known without building it)."""
        return {"speech": "logmel", "text": False}

    def __init__(self, *, speech_dim: int = 80, n_classes: int = 4, channels: tuple[int, ...] = (32, 64),
                 lstm_hidden: int = 128, attention_dim: int = 128, dropout: float = 0.3,
                 gender_weight: float = 1.0):
        super().__init__()
        self.inputs = self.inputs_of({})
        self.speech_dim, self.gender_weight = speech_dim, gender_weight
        self.blocks = nn.ModuleList()
        in_channels, bins = 1, speech_dim
        for out_channels in channels:
            self.blocks.append(nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, padding=1),
                                             nn.BatchNorm2d(out_channels), nn.ReLU(), nn.MaxPool2d(2)))
            in_channels, bins = out_channels, bins // 2
        if bins < 1:
            raise ValueError(f"multitask: {len(channels)} pooling blocks leave no frequency bins of "
                             f"speech_dim={speech_dim}")
        self.lstm = nn.LSTM(in_channels * bins, lstm_hidden, batch_first=True, bidirectional=True)
        self.pooling = AdditiveAttentionPooling(2 * lstm_hidden, attention_dim)
        self.dropout = nn.Dropout(dropout)
        self.emotion_head = nn.Linear(2 * lstm_hidden, n_classes)
        self.gender_head = nn.Linear(2 * lstm_hidden, 2)

    def forward(self, batch: dict) -> dict:
        x = require(batch, "speech", "multitask", "[B, T, F] log-Mel")
        if x.dim() != 3:
            raise ValueError(f"multitask expects speech [B, T, F] log-Mel, got {tuple(x.shape)}")
        check_dim(x, self.speech_dim, "multitask", "speech_dim")
        lengths = prefix_lengths(mask_for(batch, "speech", x), "multitask speech_mask")
        h = x[:, None] * _frames(lengths, x.shape[1])[:, None, :, None].to(x.dtype)
        for block in self.blocks:
            h = block(h)
            lengths = lengths // 2  # max-pool floors; a frame mixing real and padding is dropped
            h = h * _frames(lengths, h.shape[2])[:, None, :, None].to(h.dtype)
        if (lengths == 0).any():
            raise ValueError(f"multitask: an utterance is shorter than the {2 ** len(self.blocks)} frames "
                             "the pooling blocks need")
        h = h.permute(0, 2, 1, 3).flatten(2)  # [B, T', C * F']
        packed = pack_padded_sequence(h, lengths.cpu(), batch_first=True, enforce_sorted=False)
        h = pad_packed_sequence(self.lstm(packed)[0], batch_first=True, total_length=h.shape[1])[0]
        pooled = self.dropout(self.pooling(h, _frames(lengths, h.shape[1])))
        return {"logits": self.emotion_head(pooled), "gender_logits": self.gender_head(pooled)}

    def loss(self, batch: dict, outputs: dict, class_weights: torch.Tensor | None = None) -> torch.Tensor:
        emotion = classification_loss(outputs["logits"], require(batch, "label", "multitask", "[B] class index"),
                                      class_weights)
        gender = require(batch, "gender", "multitask", "[B] 0 Female, 1 Male, -1 unknown").long()
        known = gender >= 0
        if not known.any():
            return emotion + 0.0 * outputs["gender_logits"].sum()
        return emotion + self.gender_weight * F.cross_entropy(outputs["gender_logits"][known], gender[known])


def _frames(lengths: torch.Tensor, total: int) -> torch.Tensor:
    """[B, total] bool: True for the first lengths[b] frames."""
    return torch.arange(total, device=lengths.device)[None, :] < lengths[:, None]
