"""The main paper's model ("How Attention Shapes Emotion"): speech and text concatenated along time,
one token mixer from sercore.attention, attention pooling, an MLP classifier.

    speech  SSL hidden states [B, S, T, F] -> learned layer weights -> LayerNorm      (speech="ssl")
            or log-Mel [B, T, F] -> LayerNorm                                          (speech="logmel")
    text    token states [B, N, E] -> LayerNorm                                        (optional)
    each    -> Linear to `width` where needed -> Dropout(0.4)
    [speech ; text] along time -> mixer block(s) -> attention pooling -> classifier -> logits [B, C]

Choices where the paper's public code (AttentionAlternatives, scripts/model.py) is followed or left, each
documented at its option (sercore.fidelity.FUSION lists them):
  * SSL layer weighting. As the code: raw learned weights, initialised to 1/N, over the N transformer-layer
    outputs (hidden states 1..L of the cache's L + 1; `layer_weighting="raw"`, `layers="transformer"`);
    `layer_weighting="softmax"` and `layers="all"` give the softmax form over all L + 1 states
    (pooling.LayerWeightedSum).
  * Projections. The paper's features and mixer are all 1024-d, so it has none. Here an SSL or text stream
    whose size differs from `width` gets its own Linear(size, width); log-Mel always gets one (80 bands are
    not a learned representation). As in the public code, LayerNorm comes first, then the projection
    (its "adapter"), then the dropout.
  * Concatenation. Each sample's real speech frames are followed directly by its real text tokens and the
    padding goes to the end, so no mixer ever sees padding between the two streams and a padded sample
    equals the sample run alone. The public code concatenated padded tensors without masks; it trained on
    fixed 5.5 s crops (no speech padding), so only padded text tokens differ from this.
  * Mixer block. The paper: one mixer, no feed-forward, no residual, no norm. `num_layers`, `ffn`,
    `residual` and `norm` ("pre" or "post" LayerNorm) turn those on for ablations; defaults are the paper's.
  * Causal vs bidirectional. As the code, softmax attention is bidirectional and the five fla-style mixers
    are causal; mechanism_options={"bidirectional": True} (those five) or {"causal": True} (softmax) flips
    the direction, to separate the mechanism from its direction.
  * Classifier: heads.FusionClassifier, the layout of the authors' scripts/classifier_layer.py.
"""

from __future__ import annotations

import torch
from torch import nn

from sercore import attention
from sercore.models.batch import check_dim, mask_for, require
from sercore.models.heads import FusionClassifier, classification_loss
from sercore.models.pooling import AttentionPooling, LayerWeightedSum

SPEECH_KINDS = ("ssl", "logmel")
NORMS = ("none", "pre", "post")


def concat_along_time(a: torch.Tensor, a_mask: torch.Tensor, b: torch.Tensor, b_mask: torch.Tensor):
    """Per sample: the real rows of a, then the real rows of b, then padding.

    a [B, Ta, D], b [B, Tb, D] with masks [B, Ta], [B, Tb] (True = real). Returns x [B, T, D] and mask [B, T]
    with T the longest combined length in the batch."""
    lengths = a_mask.sum(1) + b_mask.sum(1)
    total = int(lengths.max())
    out = a.new_zeros(a.shape[0], total, a.shape[-1])
    rows_a, cols_a = a_mask.nonzero(as_tuple=True)
    rows_b, cols_b = b_mask.nonzero(as_tuple=True)
    # Destination of each real row: its rank among the sample's real rows (b's ranks start after a's).
    dest_a = (a_mask.cumsum(1) - 1)[rows_a, cols_a]
    dest_b = (b_mask.cumsum(1) - 1 + a_mask.sum(1, keepdim=True))[rows_b, cols_b]
    out = out.index_put((rows_a, dest_a), a[rows_a, cols_a])
    out = out.index_put((rows_b, dest_b), b[rows_b, cols_b])
    mask = torch.arange(total, device=a.device)[None, :] < lengths[:, None]
    return out, mask


class MixerBlock(nn.Module):
    """One token mixer with optional residual, LayerNorm (pre/post) and GELU feed-forward."""

    def __init__(self, mixer: nn.Module, width: int, ffn: bool, ffn_mult: int, residual: bool, norm: str):
        super().__init__()
        self.mixer, self.residual, self.norm_kind = mixer, residual, norm
        self.norm = nn.LayerNorm(width) if norm != "none" else None
        self.ffn = nn.Sequential(nn.Linear(width, ffn_mult * width), nn.GELU(),
                                 nn.Linear(ffn_mult * width, width)) if ffn else None
        self.ffn_norm = nn.LayerNorm(width) if ffn and norm != "none" else None

    def _sublayer(self, x, layer, norm):
        h = layer(norm(x) if self.norm_kind == "pre" else x)
        x = x + h if self.residual else h
        return norm(x) if self.norm_kind == "post" else x

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self._sublayer(x, lambda h: self.mixer(h, mask), self.norm)
        if self.ffn is not None:
            x = self._sublayer(x, self.ffn, self.ffn_norm)
        # Keep padded rows at zero so the next block and the pooling see exactly what a lone sample gives.
        return x * mask[..., None].to(x.dtype)


class FusionModel(nn.Module):
    """Speech (+ text) fusion along time through one token mixer. Defaults are the paper's settings
    (WavLM-Large: 25 hidden states of 1024; BERT-large: 1024; width 1024, 4 heads, 8 classes).

    Options: speech ("ssl" | "logmel"), speech_dim, ssl_layers (hidden states per SSL frame in the cache,
    L + 1; "ssl" only), layer_weighting ("raw" | "softmax") and layers ("transformer" | "all"): see
    pooling.LayerWeightedSum, text (use a text stream when the batch has one), text_dim, n_classes,
    mechanism (a sequence mixer, sercore.attention.SEQUENCE_NAMES), mechanism_options (dict passed to it, e.g.
    {"bidirectional": True}), width, heads, num_layers, ffn, ffn_mult, residual, norm ("none" | "pre" |
    "post"), input_dropout (0.4, on both streams), pool_dropout (before pooling; 0 in the paper's runs),
    head_width, head_blocks, head_dropout (heads.FusionClassifier).
    """

    @staticmethod
    def inputs_of(options: dict) -> dict:
        """`inputs` of the model these options build (sercore.models.model_inputs: known without building it)."""
        return {"speech": options["speech"], "text": bool(options["text"])}

    @staticmethod
    def mixers_of(options: dict) -> tuple[str, ...]:
        """The sercore.attention names this model builds by registry name (the run's code key needs them)."""
        return (options["mechanism"],)

    def __init__(self, *, speech: str = "ssl", speech_dim: int = 1024, ssl_layers: int = 25,
                 layer_weighting: str = "raw", layers: str = "transformer", text: bool = True,
                 text_dim: int = 1024, n_classes: int = 8, mechanism: str = "softmax",
                 mechanism_options: dict | None = None, width: int = 1024, heads: int = 4, num_layers: int = 1,
                 ffn: bool = False, ffn_mult: int = 4, residual: bool = False, norm: str = "none",
                 input_dropout: float = 0.4, pool_dropout: float = 0.0, head_width: int = 512,
                 head_blocks: int = 4, head_dropout: float = 0.1):
        super().__init__()
        if speech not in SPEECH_KINDS:
            raise ValueError(f"fusion: speech must be one of {SPEECH_KINDS}, got {speech!r}")
        if norm not in NORMS:
            raise ValueError(f"fusion: norm must be one of {NORMS}, got {norm!r}")
        if mechanism not in attention.SEQUENCE_NAMES:
            valid = list(attention.SEQUENCE_NAMES)
            raise ValueError(f"fusion: mechanism must be a sequence mixer, one of {', '.join(valid)}; "
                             f"got {mechanism!r}")
        if num_layers < 1:
            raise ValueError(f"fusion: num_layers must be at least 1, got {num_layers}")
        self.inputs = self.inputs_of({"speech": speech, "text": text})
        self.speech_dim, self.text_dim, self.width = speech_dim, text_dim, width

        self.layer_weights = LayerWeightedSum(ssl_layers, layer_weighting, layers) if speech == "ssl" else None
        self.speech_norm = nn.LayerNorm(speech_dim)
        needs_projection = speech == "logmel" or speech_dim != width
        self.speech_projection = nn.Linear(speech_dim, width) if needs_projection else nn.Identity()
        if text:
            self.text_norm = nn.LayerNorm(text_dim)
            self.text_projection = nn.Linear(text_dim, width) if text_dim != width else nn.Identity()
        self.input_dropout = nn.Dropout(input_dropout)

        options = dict(mechanism_options or {})
        self.blocks = nn.ModuleList(
            MixerBlock(attention.build(mechanism, width, heads, **options), width, ffn, ffn_mult, residual, norm)
            for _ in range(num_layers))
        self.pool_dropout = nn.Dropout(pool_dropout)
        self.pooling = AttentionPooling(width)
        self.classifier = FusionClassifier(width, n_classes, head_width, head_blocks, head_dropout)

    def encode_speech(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        shape = "[B, S, T, F] SSL hidden states" if self.layer_weights is not None else "[B, T, F] log-Mel"
        x = require(batch, "speech", "fusion", shape)
        mask = mask_for(batch, "speech", x)
        if self.layer_weights is not None:
            x = self.layer_weights(x)
        elif x.dim() != 3:
            raise ValueError(f"fusion (speech='logmel') expects speech {shape}, got {tuple(x.shape)}")
        check_dim(x, self.speech_dim, "fusion", "speech_dim")
        return self.input_dropout(self.speech_projection(self.speech_norm(x))), mask

    def encode_text(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor] | None:
        """None when the model has no text stream or the batch carries no text (speech-only run)."""
        if not self.inputs["text"] or batch.get("text") is None:
            return None
        x = batch["text"]
        if x.dim() != 3:
            raise ValueError(f"fusion expects text [B, N, E] token states, got {tuple(x.shape)}")
        check_dim(x, self.text_dim, "fusion", "text_dim")
        return self.input_dropout(self.text_projection(self.text_norm(x))), mask_for(batch, "text", x)

    def forward(self, batch: dict) -> dict:
        x, mask = self.encode_speech(batch)
        text = self.encode_text(batch)
        if text is not None:
            x, mask = concat_along_time(x, mask, *text)
        else:
            x = x * mask[..., None].to(x.dtype)
        for block in self.blocks:
            x = block(x, mask)
        pooled = self.pooling(self.pool_dropout(x), mask)
        return {"logits": self.classifier(pooled)}

    def loss(self, batch: dict, outputs: dict, class_weights: torch.Tensor | None = None) -> torch.Tensor:
        return classification_loss(outputs["logits"], require(batch, "label", "fusion", "[B] class index"),
                                   class_weights)
