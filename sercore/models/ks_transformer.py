"""Key-Sparse Transformer for multimodal SER (Chen et al., ICASSP 2022).

    audio [B, T, Fa] -> first max_frames frames, zero-padded to max_frames -> (Linear to audio_width if Fa
                        differs) -> 5 vanilla self-attention layers
    text  [B, N, Ft] -> first max_tokens tokens, zero-padded to max_tokens -> (Linear to text_width if Ft
                        differs) -> 5 vanilla self-attention layers
    3 CCABs per direction, each = KS cross-attention (A <- B) then KS self-attention, wrapped in one residual
    2 KS self-attention layers per modality
    mean over time per modality, concatenate -> Linear(D, D/2) -> ReLU -> Dropout(0.5)
                                               -> Linear(D/2, D/4) -> ReLU -> Dropout(0.5) -> n_classes

Defaults are what the public code does (HappyColor/Key-Sparse-Transformer: model/*.py, utils/dataset.py);
each place where sercore offers something else is a named option, listed in sercore.fidelity.KEYSPARSE:
  * fixed-length input (max_frames=460, max_tokens=20): the code's pad_input keeps the first 460 audio frames
    and the first 20 text tokens of every sample, zero-padding shorter ones, at training and test alike. So
    the key length L, and with it k = int(L * keep_rate), is the same for every sample, and a sample's output
    does not depend on its batch-mates. Here the model applies it to whatever batch it gets (padded values
    are zeroed, so what a batch held in its padding does not matter either). 460 frames are 4.6 s of the
    code's wav2vec 1.0 features and of sercore's log-Mel (both 100 frames/s), 9.2 s of a 50 frames/s SSL
    model. None: no fixed length, L is the batch's padded length (then k depends on the batch unless
    ks_options={"k_from": "real", "padded_queries_vote": False} with padding="masked").
  * widths: audio 512 (wav2vec) and text 1024 (RoBERTa-large), feed-forward sizes 256 and 512;
    cross-attention projects the other modality's keys/values from its own width (KeySparseAttention's
    context_dim), so the widths may differ. D = 512 + 1024 -> 768 -> 384 -> 4.
  * each stack (the 5 encoder layers, each CCAB half, the 2 final layers) starts with a LayerNorm of its
    query input (and of the key input for cross-attention) and adds positions at EVERY layer to the
    attention's input only (the residual path carries none). In cross-attention the positions go on the
    query and the key; the value is the normed key input without positions, as in the code.
    positions="code" (default): the code registers its sinusoidal tables (2000 positions) as parameters and
    then re-initialises every parameter of dim > 1 Xavier-uniform, tables included, so its positions are
    small frozen random vectors (|pe| <= sqrt(6 / (2000 + width)), 0.049 at 512): one query table (and one
    key table for cross-attention) per stack, shared by its layers, drawn by this model's initialisation
    and never trained. positions="sinusoidal": the unit-amplitude sinusoids the tables were built as.
  * layers are post-LN with ReLU feed-forward and dropout 0.1, also on the attention weights (the code's
    attention_dropout). encoder_attention="code" (default): the vanilla layers are KeySparseAttention at
    keep_rate 1 (every key kept: softmax attention with biased q, k, v projections and weight dropout, as
    the code's Multihead_attention); "softmax": sercore's softmax mixer (bias-free q, k, v, no weight
    dropout, padded query rows zeroed), allowed with padding="masked" only. Weights of the stacks are
    initialised Xavier-uniform as the code does.
  * residuals around the CCABs: the code adds the CCAB input twice (x_a + (ccab(x_a) + x_a), a residual in
    the CCAB module and again in the model); `residual_twice=True` keeps that, False gives a single
    residual around the CCAB stack.
  * padding="code" (default): the code passes only a key padding mask, and only to the encoders and the
    cross-attention: there padded keys are excluded, while padded query rows are computed like real ones
    (not zeroed); they then enter the CCABs' self-attention and the final layers as keys and queries (no
    mask there: they vote for key importance and count in L) and the unmasked mean over all max_frames /
    max_tokens positions. padding="masked": padded positions are excluded everywhere (keys masked, padded
    query rows zeroed, masked mean).
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
PADDING = ("code", "masked")
POSITIONS = ("code", "sinusoidal")
ENCODER_ATTENTION = ("code", "softmax")
CLASSIFIERS = ("code", "linear")
CODE_TABLE_LENGTH = 2000  # positions in the code's tables (create_PositionalEncoding's max_seq_len)


def sinusoidal_positions(length: int, dim: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """[length, dim]: channel pair (2i, 2i+1) = sin, cos of pos / 10000^(2i / dim)."""
    position = torch.arange(length, device=device, dtype=torch.float64)[:, None]
    frequency = 10000.0 ** (-torch.arange(0, dim, 2, device=device, dtype=torch.float64) / dim)
    table = torch.zeros(length, dim, device=device, dtype=torch.float64)
    table[:, 0::2] = torch.sin(position * frequency)
    table[:, 1::2] = torch.cos(position * frequency[: dim // 2])
    return table.to(dtype)


def fixed_length(x: torch.Tensor, mask: torch.Tensor, length: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """x [B, T, F], mask [B, T] -> the first `length` steps, zero-padded (mask False) when T is shorter, as the
    code's pad_input; positions the mask marks as padding are zeroed. length None: only the zeroing."""
    if length is not None:
        x, mask = x[:, :length], mask[:, :length]
        if x.shape[1] < length:
            x = F.pad(x, (0, 0, 0, length - x.shape[1]))
            mask = F.pad(mask, (0, length - mask.shape[1]), value=False)
    return x.masked_fill(~mask[..., None], 0.0), mask


class PostLNLayer(nn.Module):
    """x = LN(x + drop(attn(x + pos [, context + context_pos, value=context]))); x = LN(x + drop(FFN(x)))."""

    def __init__(self, mixer: nn.Module, dim: int, ffn_dim: int, dropout: float):
        super().__init__()
        self.mixer = mixer
        self.attention_norm = nn.LayerNorm(dim)
        self.fc1, self.fc2 = nn.Linear(dim, ffn_dim), nn.Linear(ffn_dim, dim)
        self.final_norm = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x, mask, positions, context=None, context_mask=None, context_positions=None):
        if context is None:
            h = self.mixer(x + positions, mask)
        else:  # the value is the key input without positions, as in the code
            h = self.mixer(x + positions, mask, context=context + context_positions, context_mask=context_mask,
                           value=context)
        x = self.attention_norm(x + self.dropout(h))
        h = self.fc2(self.dropout(F.relu(self.fc1(x))))
        return self.final_norm(x + self.dropout(h))


class Stack(nn.Module):
    """Input LayerNorm(s), then `layers` post-LN layers of one mixer kind ("softmax" or "keysparse").

    positions "code": frozen tables of CODE_TABLE_LENGTH positions (parameters with requires_grad=False,
    registered first), re-initialised Xavier-uniform with the weights as the code does; "sinusoidal":
    computed for each input length."""

    def __init__(self, kind: str, layers: int, dim: int, ffn_dim: int, heads: int, dropout: float,
                 context_dim: int | None = None, options: dict | None = None, positions: str = "code"):
        super().__init__()
        options = dict(options or {})
        if context_dim is not None:
            options["context_dim"] = context_dim
        self.positions = positions
        if positions == "code":
            self.query_positions = nn.Parameter(torch.empty(CODE_TABLE_LENGTH, dim), requires_grad=False)
            self.context_positions = None if context_dim is None else \
                nn.Parameter(torch.empty(CODE_TABLE_LENGTH, context_dim), requires_grad=False)
        self.input_norm = nn.LayerNorm(dim)
        self.context_norm = nn.LayerNorm(context_dim) if context_dim is not None else None
        self.layers = nn.ModuleList(
            PostLNLayer(attention.build(kind, dim, heads, **options), dim, ffn_dim, dropout) for _ in range(layers))
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    def _table(self, name: str, x: torch.Tensor) -> torch.Tensor:
        if self.positions == "sinusoidal":
            return sinusoidal_positions(x.shape[1], x.shape[2], x.device, x.dtype)
        if x.shape[1] > CODE_TABLE_LENGTH:
            raise ValueError(f"ks-transformer: positions='code' has tables of {CODE_TABLE_LENGTH} positions (the "
                             f"code's), got a sequence of {x.shape[1]}: set max_frames / max_tokens <= "
                             f"{CODE_TABLE_LENGTH} or positions='sinusoidal'")
        return getattr(self, name)[:x.shape[1]].to(x.dtype)

    def forward(self, x, mask, context=None, context_mask=None):
        x = self.input_norm(x)
        positions = self._table("query_positions", x)
        context_positions = None
        if context is not None:
            context = self.context_norm(context)
            context_positions = self._table("context_positions", context)
        for layer in self.layers:
            x = layer(x, mask, positions, context, context_mask, context_positions)
        return x


class CCAB(nn.Module):
    """Cross-modal block: KS cross-attention (x <- context) then KS self-attention, one layer each."""

    def __init__(self, dim, context_dim, ffn_dim, heads, dropout, ks_options, positions):
        super().__init__()
        self.cross = Stack("keysparse", 1, dim, ffn_dim, heads, dropout, context_dim, ks_options, positions)
        self.self_attention = Stack("keysparse", 1, dim, ffn_dim, heads, dropout, None, ks_options, positions)

    def forward(self, x, mask, context, context_mask, self_mask):
        return self.self_attention(self.cross(x, mask, context, context_mask), self_mask)


def _positive_or_none(name: str, value) -> None:
    if value is not None and not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
        raise ValueError(f"ks-transformer: {name} must be a positive integer or None, got {value!r}")


class KSTransformer(nn.Module):
    """Key-Sparse Transformer. Defaults are the public code's (audio 512, text 1024, 8 heads, 4 classes,
    460 frames and 20 tokens, its positions and its padding); see the module docstring.

    Options: speech ("ssl" | "logmel"), speech_dim, ssl_layer (which hidden state of [B, L, T, F] to use;
    -1 = last), text_dim, audio_width, text_width, audio_ffn, text_ffn, heads, encoder_layers, ccab_layers,
    final_layers, keep_rate (every KS layer), ks_options (other KeySparseAttention settings, e.g.
    {"k_from": "real"}), dropout (layers, 0.1), classifier_dropout (0.5), n_classes, max_frames (460 | None),
    max_tokens (20 | None), positions ("code" | "sinusoidal"), encoder_attention ("code" | "softmax"),
    padding ("code" | "masked"), residual_twice.
    """

    @staticmethod
    def inputs_of(options: dict) -> dict:
        """`inputs` of the model these options build (sercore.models.model_inputs: known without building it)."""
        return {"speech": options["speech"], "text": True}

    @staticmethod
    def mixers_of(options: dict) -> tuple[str, ...]:
        """The sercore.attention names this model builds by registry name (the run's code key needs them)."""
        return ("keysparse", "softmax") if options["encoder_attention"] == "softmax" else ("keysparse",)

    def __init__(self, *, speech: str = "ssl", speech_dim: int = 512, ssl_layer: int = -1, text_dim: int = 1024,
                 audio_width: int = 512, text_width: int = 1024, audio_ffn: int = 256, text_ffn: int = 512,
                 heads: int = 8, encoder_layers: int = 5, ccab_layers: int = 3, final_layers: int = 2,
                 keep_rate: float = 0.5, ks_options: dict | None = None, dropout: float = 0.1,
                 classifier_dropout: float = 0.5, n_classes: int = 4, max_frames: int | None = 460,
                 max_tokens: int | None = 20, positions: str = "code", encoder_attention: str = "code",
                 padding: str = "code", residual_twice: bool = True, classifier: str = "code"):
        super().__init__()
        for name, value, choices in (("speech", speech, SPEECH_KINDS), ("padding", padding, PADDING),
                                     ("positions", positions, POSITIONS),
                                     ("encoder_attention", encoder_attention, ENCODER_ATTENTION),
                                     ("classifier", classifier, CLASSIFIERS)):
            if value not in choices:
                raise ValueError(f"ks-transformer: {name} must be one of {choices}, got {value!r}")
        _positive_or_none("max_frames", max_frames)
        _positive_or_none("max_tokens", max_tokens)
        if positions == "code" and max(max_frames or 0, max_tokens or 0) > CODE_TABLE_LENGTH:
            raise ValueError(f"ks-transformer: positions='code' has tables of {CODE_TABLE_LENGTH} positions, "
                             f"max_frames={max_frames} / max_tokens={max_tokens} exceed them")
        if encoder_attention == "softmax" and padding == "code":
            raise ValueError("ks-transformer: encoder_attention='softmax' zeroes padded query rows, which "
                             "padding='code' computes; use encoder_attention='code' or padding='masked'")
        clashes = sorted({"keep_rate", "context_dim", "zero_padded_queries"} & set(ks_options or {}))
        if clashes:
            raise ValueError(f"ks-transformer: ks_options may not set {', '.join(clashes)} (keep_rate is its own "
                             "option; context_dim follows the widths; zero_padded_queries follows padding)")
        ks = {"dropout": dropout, **(ks_options or {}), "keep_rate": keep_rate,
              "zero_padded_queries": padding == "masked"}
        self.inputs = self.inputs_of({"speech": speech})
        self.speech_dim, self.ssl_layer, self.text_dim = speech_dim, ssl_layer, text_dim
        self.max_frames, self.max_tokens = max_frames, max_tokens
        self.padding, self.residual_twice = padding, residual_twice

        self.audio_in = nn.Linear(speech_dim, audio_width) if speech_dim != audio_width else nn.Identity()
        self.text_in = nn.Linear(text_dim, text_width) if text_dim != text_width else nn.Identity()
        # keep_rate 1 keeps every key: plain softmax attention with the code's biases and weight dropout.
        encoder_kind, encoder = ("keysparse", {**ks, "keep_rate": 1.0}) if encoder_attention == "code" \
            else ("softmax", {})
        self.audio_encoder = Stack(encoder_kind, encoder_layers, audio_width, audio_ffn, heads, dropout, None,
                                   encoder, positions)
        self.text_encoder = Stack(encoder_kind, encoder_layers, text_width, text_ffn, heads, dropout, None,
                                  encoder, positions)
        self.audio_from_text = nn.ModuleList(
            CCAB(audio_width, text_width, audio_ffn, heads, dropout, ks, positions) for _ in range(ccab_layers))
        self.text_from_audio = nn.ModuleList(
            CCAB(text_width, audio_width, text_ffn, heads, dropout, ks, positions) for _ in range(ccab_layers))
        self.audio_final = Stack("keysparse", final_layers, audio_width, audio_ffn, heads, dropout, None, ks,
                                 positions)
        self.text_final = Stack("keysparse", final_layers, text_width, text_ffn, heads, dropout, None, ks,
                                positions)
        joint = audio_width + text_width
        if classifier == "code":
            self.classifier = nn.Sequential(
                nn.Linear(joint, joint // 2), nn.ReLU(), nn.Dropout(classifier_dropout),
                nn.Linear(joint // 2, joint // 4), nn.ReLU(), nn.Dropout(classifier_dropout),
                nn.Linear(joint // 4, n_classes))
        else:  # one layer on the pooled vector: the MLP's slow start lasts longer than a CPU run (fidelity)
            self.classifier = nn.Sequential(nn.Dropout(classifier_dropout), nn.Linear(joint, n_classes))

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
        x, mask = fixed_length(x, mask, self.max_frames)
        # zero again after the projection: the code's padded rows enter its input LayerNorm as zeros
        return self.audio_in(x).masked_fill(~mask[..., None], 0.0), mask

    def _text(self, batch):
        x = require(batch, "text", "ks-transformer", "[B, N, E] token states")
        if x.dim() != 3:
            raise ValueError(f"ks-transformer expects text [B, N, E] token states, got {tuple(x.shape)}")
        check_dim(x, self.text_dim, "ks-transformer", "text_dim")
        x, mask = fixed_length(x, mask_for(batch, "text", x), self.max_tokens)
        return self.text_in(x).masked_fill(~mask[..., None], 0.0), mask

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
        else:  # the code: no mask after the cross-attention, the mean over every position
            audio, text = self.audio_final(audio, None), self.text_final(text, None)
            pooled = torch.cat([audio.mean(1), text.mean(1)], dim=-1)
        return {"logits": self.classifier(pooled)}

    def loss(self, batch: dict, outputs: dict, class_weights: torch.Tensor | None = None) -> torch.Tensor:
        return classification_loss(outputs["logits"], require(batch, "label", "ks-transformer", "[B] class index"),
                                   class_weights)

