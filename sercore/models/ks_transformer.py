"""Key-Sparse Transformer for multimodal SER (Chen et al., ICASSP 2022).

    audio [B, T, Fa] -> (Linear to audio_width if Fa differs) -> 5 vanilla self-attention layers
    text  [B, N, Ft] -> (Linear to text_width if Ft differs)  -> 5 vanilla self-attention layers
    3 CCABs per direction, each = KS cross-attention (A <- B) then KS self-attention, wrapped in one residual
    2 KS self-attention layers per modality
    mean over time per modality, concatenate -> Linear(D, D/2) -> ReLU -> Dropout(0.5)
                                               -> Linear(D/2, D/4) -> ReLU -> Dropout(0.5) -> n_classes

Details taken from the public code (HappyColor/Key-Sparse-Transformer, model/*.py) where the notes are short:
  * widths: the encoders work at the input sizes, audio 512 (wav2vec) and text 1024 (RoBERTa-large), with
    feed-forward sizes 256 and 512; cross-attention projects the other modality's keys/values from its own
    width (KeySparseAttention's context_dim), so the widths may differ. D = 512 + 1024 -> 768 -> 384 -> 4.
  * each stack (the 5 encoder layers, each CCAB half, the 2 final layers) starts with a LayerNorm of its
    query input (and of the key input for cross-attention), and adds the sinusoidal positions at EVERY layer
    to the attention's input only (the residual path carries no positions). Layers are post-LN with ReLU
    feed-forward and dropout 0.1 (dropout also on the attention weights of the KS layers, as the code's
    attention_dropout; the vanilla layers use sercore's softmax mixer, which has no weight dropout and
    bias-free q, k, v projections where the code's have biases).
    Weights of the stacks are initialised Xavier-uniform as the code does.
  * residuals around the CCABs: the code adds the CCAB input twice (x_a + (ccab(x_a) + x_a), a residual in
    the CCAB module and again in the model); `residual_twice=True` keeps that, False gives the single
    residual the notes describe.
  * padding: the code masks padded keys in the encoders and cross-attention but not in the CCABs'
    self-attention, the final layers or the mean over time. `padding="masked"` (default) masks
    everywhere; `padding="code"` drops the mask where the code did.
The two modality directions run in parallel from the encoder outputs, as in the code.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sercore import attention
from sercore.models.batch import check_dim, mask_for, require
from sercore.models.heads import classification_loss
from sercore.models.pooling import masked_mean

SPEECH_KINDS = ("ssl", "logmel")
PADDING = ("masked", "code")


def sinusoidal_positions(length: int, dim: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """[length, dim]: channel pair (2i, 2i+1) = sin, cos of pos / 10000^(2i / dim)."""
    position = torch.arange(length, device=device, dtype=torch.float64)[:, None]
    frequency = 10000.0 ** (-torch.arange(0, dim, 2, device=device, dtype=torch.float64) / dim)
    table = torch.zeros(length, dim, device=device, dtype=torch.float64)
    table[:, 0::2] = torch.sin(position * frequency)
    table[:, 1::2] = torch.cos(position * frequency[: dim // 2])
    return table.to(dtype)


class PostLNLayer(nn.Module):
    """x = LN(x + drop(attn(x + pos [, context + context_pos]))); x = LN(x + drop(FFN(x)))."""

    def __init__(self, mixer: nn.Module, dim: int, ffn_dim: int, dropout: float):
        super().__init__()
        self.mixer = mixer
        self.attention_norm = nn.LayerNorm(dim)
        self.fc1, self.fc2 = nn.Linear(dim, ffn_dim), nn.Linear(ffn_dim, dim)
        self.final_norm = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x, mask, context=None, context_mask=None):
        query = x + sinusoidal_positions(x.shape[1], x.shape[2], x.device, x.dtype)
        if context is None:
            h = self.mixer(query, mask)
        else:
            context = context + sinusoidal_positions(context.shape[1], context.shape[2], x.device, x.dtype)
            h = self.mixer(query, mask, context=context, context_mask=context_mask)
        x = self.attention_norm(x + self.dropout(h))
        h = self.fc2(self.dropout(F.relu(self.fc1(x))))
        return self.final_norm(x + self.dropout(h))


class Stack(nn.Module):
    """Input LayerNorm(s), then `layers` post-LN layers of one kind ("softmax" or "keysparse")."""

    def __init__(self, kind: str, layers: int, dim: int, ffn_dim: int, heads: int, dropout: float,
                 context_dim: int | None = None, ks_options: dict | None = None):
        super().__init__()
        options = dict(ks_options or {}) if kind == "keysparse" else {}
        if context_dim is not None:
            options["context_dim"] = context_dim
        self.input_norm = nn.LayerNorm(dim)
        self.context_norm = nn.LayerNorm(context_dim) if context_dim is not None else None
        self.layers = nn.ModuleList(
            PostLNLayer(attention.build(kind, dim, heads, **options), dim, ffn_dim, dropout) for _ in range(layers))
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    def forward(self, x, mask, context=None, context_mask=None):
        x = self.input_norm(x)
        if context is not None:
            context = self.context_norm(context)
        for layer in self.layers:
            x = layer(x, mask, context, context_mask)
        return x


class CCAB(nn.Module):
    """Cross-modal block: KS cross-attention (x <- context) then KS self-attention, one layer each."""

    def __init__(self, dim, context_dim, ffn_dim, heads, dropout, ks_options):
        super().__init__()
        self.cross = Stack("keysparse", 1, dim, ffn_dim, heads, dropout, context_dim, ks_options)
        self.self_attention = Stack("keysparse", 1, dim, ffn_dim, heads, dropout, None, ks_options)

    def forward(self, x, mask, context, context_mask, self_mask):
        return self.self_attention(self.cross(x, mask, context, context_mask), self_mask)


class KSTransformer(nn.Module):
    """Key-Sparse Transformer. Defaults are the paper's (audio 512, text 1024, 8 heads, 4 classes).

    Options: speech ("ssl" | "logmel"), speech_dim, ssl_layer (which hidden state of [B, L, T, F] to use;
    -1 = last), text_dim, audio_width, text_width, audio_ffn, text_ffn, heads, encoder_layers, ccab_layers,
    final_layers, keep_rate (every KS layer), ks_options (other KeySparseAttention settings, e.g.
    {"k_from": "real"}), dropout (layers, 0.1), classifier_dropout (0.5), n_classes, padding ("masked" |
    "code"), residual_twice.
    """

    def __init__(self, *, speech: str = "ssl", speech_dim: int = 512, ssl_layer: int = -1, text_dim: int = 1024,
                 audio_width: int = 512, text_width: int = 1024, audio_ffn: int = 256, text_ffn: int = 512,
                 heads: int = 8, encoder_layers: int = 5, ccab_layers: int = 3, final_layers: int = 2,
                 keep_rate: float = 0.5, ks_options: dict | None = None, dropout: float = 0.1,
                 classifier_dropout: float = 0.5, n_classes: int = 4, padding: str = "masked",
                 residual_twice: bool = True):
        super().__init__()
        if speech not in SPEECH_KINDS:
            raise ValueError(f"ks-transformer: speech must be one of {SPEECH_KINDS}, got {speech!r}")
        if padding not in PADDING:
            raise ValueError(f"ks-transformer: padding must be one of {PADDING}, got {padding!r}")
        clashes = sorted({"keep_rate", "context_dim"} & set(ks_options or {}))
        if clashes:
            raise ValueError(f"ks-transformer: ks_options may not set {', '.join(clashes)} "
                             "(keep_rate is its own option; context_dim follows the widths)")
        ks = {"dropout": dropout, **(ks_options or {}), "keep_rate": keep_rate}
        self.inputs = {"speech": speech, "text": True}
        self.speech_dim, self.ssl_layer, self.text_dim = speech_dim, ssl_layer, text_dim
        self.padding, self.residual_twice = padding, residual_twice

        self.audio_in = nn.Linear(speech_dim, audio_width) if speech_dim != audio_width else nn.Identity()
        self.text_in = nn.Linear(text_dim, text_width) if text_dim != text_width else nn.Identity()
        self.audio_encoder = Stack("softmax", encoder_layers, audio_width, audio_ffn, heads, dropout)
        self.text_encoder = Stack("softmax", encoder_layers, text_width, text_ffn, heads, dropout)
        self.audio_from_text = nn.ModuleList(
            CCAB(audio_width, text_width, audio_ffn, heads, dropout, ks) for _ in range(ccab_layers))
        self.text_from_audio = nn.ModuleList(
            CCAB(text_width, audio_width, text_ffn, heads, dropout, ks) for _ in range(ccab_layers))
        self.audio_final = Stack("keysparse", final_layers, audio_width, audio_ffn, heads, dropout, None, ks)
        self.text_final = Stack("keysparse", final_layers, text_width, text_ffn, heads, dropout, None, ks)
        joint = audio_width + text_width
        self.classifier = nn.Sequential(
            nn.Linear(joint, joint // 2), nn.ReLU(), nn.Dropout(classifier_dropout),
            nn.Linear(joint // 2, joint // 4), nn.ReLU(), nn.Dropout(classifier_dropout),
            nn.Linear(joint // 4, n_classes))

    def _audio(self, batch):
        shape = "[B, L, T, F] SSL hidden states" if self.inputs["speech"] == "ssl" else "[B, T, F] log-Mel"
        x = require(batch, "speech", "ks-transformer", shape)
        mask = mask_for(batch, "speech", x)
        if self.inputs["speech"] == "ssl":
            if x.dim() != 4:
                raise ValueError(f"ks-transformer expects speech {shape}, got {tuple(x.shape)}")
            x = x[:, self.ssl_layer]
        elif x.dim() != 3:
            raise ValueError(f"ks-transformer expects speech {shape}, got {tuple(x.shape)}")
        check_dim(x, self.speech_dim, "ks-transformer", "speech_dim")
        return self.audio_in(x), mask

    def _text(self, batch):
        x = require(batch, "text", "ks-transformer", "[B, N, E] token states")
        if x.dim() != 3:
            raise ValueError(f"ks-transformer expects text [B, N, E] token states, got {tuple(x.shape)}")
        check_dim(x, self.text_dim, "ks-transformer", "text_dim")
        return self.text_in(x), mask_for(batch, "text", x)

    def _cross(self, blocks, x, mask, context, context_mask):
        inner_mask = mask if self.padding == "masked" else None
        h = x
        for block in blocks:
            h = block(h, mask, context, context_mask, inner_mask)
        h = h + x  # the residual shared by the CCAB stack
        return x + h if self.residual_twice else h

    def forward(self, batch: dict) -> dict:
        audio, audio_mask = self._audio(batch)
        text, text_mask = self._text(batch)
        audio = self.audio_encoder(audio, audio_mask)
        text = self.text_encoder(text, text_mask)
        audio, text = (self._cross(self.audio_from_text, audio, audio_mask, text, text_mask),
                       self._cross(self.text_from_audio, text, text_mask, audio, audio_mask))
        if self.padding == "masked":
            audio = self.audio_final(audio, audio_mask)
            text = self.text_final(text, text_mask)
            pooled = torch.cat([masked_mean(audio, audio_mask), masked_mean(text, text_mask)], dim=-1)
        else:
            audio, text = self.audio_final(audio, None), self.text_final(text, None)
            pooled = torch.cat([audio.mean(1), text.mean(1)], dim=-1)
        return {"logits": self.classifier(pooled)}

    def loss(self, batch: dict, outputs: dict, class_weights: torch.Tensor | None = None) -> torch.Tensor:
        return classification_loss(outputs["logits"], require(batch, "label", "ks-transformer", "[B] class index"),
                                   class_weights)

