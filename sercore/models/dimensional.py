"""Dimensional SER (Wagner et al. 2023): an SSL encoder's last layer, mean over time, and the released
model's regression head, trained with 1 - CCC.

Protocol: a probe. Wagner et al. fine-tuned the transformer layers of wav2vec2-large-robust and credit their
valence CCC (.638 on MSP-Podcast v1.7) to what fine-tuning learns. This model takes frozen, cached hidden
states and trains only the head (and the layer weights with layers="weighted"), so its CCC measures what the
frozen layers already encode: no setting or profile reproduces the paper's number (sercore.fidelity,
DIMENSIONAL).

    SSL hidden states [B, L, T, D] -> last layer (or a learned layer-weighted sum) -> mean over time
    -> Dropout -> Linear(D, D) -> tanh -> Dropout -> Linear(D, 3)

Output order. The released model (wav2vec2-large-robust-12-ft-emotion-msp-dim) emits arousal, DOMINANCE,
valence; this head keeps that row order (so its weights line up with the released ones) and returns it as
`adv`. The trainer's batches carry `avd` = arousal, VALENCE, dominance, so the model also returns `avd`,
the same numbers reordered, and the loss compares `avd` with the batch's `avd`.

Pooling. The public head averages every frame, padding included; `pooling="masked-mean"` (default) averages
the real frames only, `pooling="unmasked-mean"` reproduces the public head.

Log-Mel input (`speech="logmel"`, the offline default where no SSL model is at hand): frames [B, T, F] are
LayerNorm-ed (raw log energies sit far from 0) and pooled the same way; the head then works at width F.
"""

from __future__ import annotations

import torch
from torch import nn

from sercore.losses import ccc_loss
from sercore.models.batch import check_dim, mask_for, require
from sercore.models.pooling import LayerWeightedSum, masked_mean

SPEECH_KINDS = ("ssl", "logmel")
LAYER_MODES = ("last", "weighted")
POOLINGS = ("masked-mean", "unmasked-mean")
# Row i of the head's output is dimension HEAD_ORDER[i]; AVD_FROM_HEAD picks the head rows in batch order.
HEAD_ORDER = ("arousal", "dominance", "valence")
BATCH_ORDER = ("arousal", "valence", "dominance")
AVD_FROM_HEAD = tuple(HEAD_ORDER.index(name) for name in BATCH_ORDER)  # (0, 2, 1)


class DimensionalModel(nn.Module):
    """Arousal / valence / dominance regressor. Outputs `avd` [B, 3] (arousal, valence, dominance, the batch
    order) and `adv` [B, 3] (arousal, dominance, valence, the released model's order).

    Options: speech ("ssl" | "logmel"), speech_dim (D), layers ("last" | "weighted"), ssl_layers (hidden
    states per frame; needed for "weighted", unused by "last"), layer_weighting ("raw" | "softmax") and
    weighted_layers ("transformer" | "all") for "weighted" (pooling.LayerWeightedSum; the defaults are the
    main paper's code form, so "weighted" means the same in both studies; the released model has no
    weighting), pooling ("masked-mean" | "unmasked-mean"), dropout (0.1, the released config's
    final_dropout)."""

    @staticmethod
    def inputs_of(options: dict) -> dict:
        """`inputs` of the model these options build (sercore.models.model_inputs: known without building it)."""
        return {"speech": options["speech"], "text": False}

    def __init__(self, *, speech: str = "ssl", speech_dim: int = 1024, layers: str = "last",
                 ssl_layers: int | None = None, layer_weighting: str = "raw", weighted_layers: str = "transformer",
                 pooling: str = "masked-mean", dropout: float = 0.1):
        super().__init__()
        for name, value, valid in (("speech", speech, SPEECH_KINDS), ("layers", layers, LAYER_MODES),
                                   ("pooling", pooling, POOLINGS)):
            if value not in valid:
                raise ValueError(f"dimensional: {name} must be one of {valid}, got {value!r}")
        if speech == "ssl" and layers == "weighted" and not ssl_layers:
            raise ValueError("dimensional: layers='weighted' needs ssl_layers (hidden states per frame)")
        self.inputs = self.inputs_of({"speech": speech})
        self.speech_dim, self.pooling_mode = speech_dim, pooling
        self.layer_weights = LayerWeightedSum(ssl_layers, layer_weighting, weighted_layers) \
            if speech == "ssl" and layers == "weighted" else None
        self.frame_norm = nn.LayerNorm(speech_dim) if speech == "logmel" else None
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(speech_dim, speech_dim), nn.Tanh(),
                                  nn.Dropout(dropout), nn.Linear(speech_dim, 3))

    def _frames(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        ssl = self.inputs["speech"] == "ssl"
        shape = "[B, L, T, D] SSL hidden states" if ssl else "[B, T, F] log-Mel"
        x = require(batch, "speech", "dimensional", shape)
        if x.dim() != (4 if ssl else 3):
            raise ValueError(f"dimensional expects speech {shape}, got {tuple(x.shape)}")
        mask = mask_for(batch, "speech", x)
        if ssl:
            x = self.layer_weights(x) if self.layer_weights is not None else x[:, -1]
        check_dim(x, self.speech_dim, "dimensional", "speech_dim")
        return (self.frame_norm(x) if self.frame_norm is not None else x), mask

    def forward(self, batch: dict) -> dict:
        x, mask = self._frames(batch)
        pooled = masked_mean(x, mask) if self.pooling_mode == "masked-mean" else x.mean(dim=1)
        adv = self.head(pooled)
        return {"adv": adv, "avd": adv[:, list(AVD_FROM_HEAD)]}

    def loss(self, batch: dict, outputs: dict, class_weights: torch.Tensor | None = None) -> torch.Tensor:
        """Mean over arousal, valence, dominance of 1 - CCC on the batch; class_weights is unused."""
        target = require(batch, "avd", "dimensional", "[B, 3] arousal, valence, dominance in [0, 1]")
        return ccc_loss(outputs["avd"], target.to(outputs["avd"].dtype))
