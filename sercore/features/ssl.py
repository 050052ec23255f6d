"""All hidden states of a frozen self-supervised speech model (WavLM, wav2vec2, HuBERT, XLSR) from a local folder.

Output [S, T, D]: S = L + 1 with L = num_hidden_layers. State 0 is the input of the first transformer layer
(the CNN features after projection and positional convolution); states 1..L are the outputs of the L
transformer layers, the ones torchaudio's extract_features returns and the main paper's code weighs
(AttentionAlternatives, scripts/speech_feature_extractor.py). The model picks what it uses
(sercore.models.pooling.LayerWeightedSum).

State L (last_state). For the "stable layer norm" models (WavLM-Large, wav2vec2-large and XLSR, HuBERT-Large)
the encoder ends with a LayerNorm; transformers 4 put it on the last hidden state, transformers 5 does not.
last_state="layer" (default) stores the last layer's own output, taken with a forward hook on that layer,
so the cache is the same under both versions and equal to torchaudio's (what the main paper's code weighs).
last_state="normed" stores the model's last_hidden_state instead, the encoder output after that LayerNorm,
which is what a released head that reads last_hidden_state sees (audeering's dimensional model). For models
without a final encoder LayerNorm the two are equal.
T = the model's frame count, D = hidden size. The frame arithmetic is the CNN's (config.json's conv_kernel and
conv_stride, no padding): `frames(n_samples)` is T for n samples (what the model's own
_get_feat_extract_output_lengths gives), `frames_per_second` = sample_rate / product of the strides (50 for
wav2vec2, WavLM and HuBERT: a 20 ms stride); training reads its frame rate from here, not from a constant.
Stored as float16 by default, halving disk and memory (a 10 s utterance of a 25 x 1024 model is ~25 MB in
float16); pass dtype="float32" to keep full precision.

Layers kept (`layers`): "all" (default, the S = L + 1 states above), "last" (state L only, [1, T, D]: what
the dimensional study and a KS-Transformer with ssl_layer=-1 read; 1/(L+1) of the disk) or a list of state
indices 0..L, kept in that order. It is part of the cache key ("all" leaves the key as it was before the
option existed, so existing caches stay valid). `output_bytes(seconds)` is what one utterance takes, from
config.json alone (no model load): frames from the CNN's kernels and strides x states kept x D x itemsize;
sercore.features.store checks it against the free disk before extracting.

Input normalisation (`normalise`): the folder's feature extractor (preprocessor_config.json) when present;
otherwise zero mean, unit variance per utterance, as Wav2Vec2FeatureExtractor does with do_normalize=True.

Batches (`states(inputs, lengths)`, what online SSL calls inside a training step, sercore.train.online):
hidden states [B, S, T, D] of a zero-padded batch of normalised waves. Where the model takes an attention
mask (`takes_attention_mask`: the feature extractor's return_attention_mask, else config feat_extract_norm
== "layer", as for WavLM-Large, wav2vec2-large-lv60 and XLSR) one batched pass gets it; a model whose CNN
starts with a group norm over time (wav2vec2-base, feat_extract_norm "group") was trained without one and
its padding would change the statistics, so a padded batch is encoded one utterance at a time. Either way
an utterance's states do not depend on what it is batched with. `precision="bfloat16"` runs the model in
bf16 (online SSL on CUDA); extraction for the cache runs it in fp32 (the default). The model's weights never
train: load_model sets requires_grad False on every one.

Long audio: chunk_seconds (default None = whole utterance) encodes consecutive chunks independently and
concatenates their frames; frames near a chunk edge then see only their own chunk. A last chunk shorter
than one second is joined to the one before it, so no chunk is too short for the CNN. A whole utterance
too short for one frame raises FeatureError (reason TOO_SHORT), which `extract` counts as a failed row.
"""

from __future__ import annotations

import json
import os

import numpy as np

from sercore.features.extraction import FeatureError
from sercore.features.local_model import (default_device, fingerprint, load_model, offline_transformers,
                                          require_model_dir)

_DTYPES = ("float16", "float32")
TOO_SHORT = "audio too short for the SSL model"
LAST_STATES = ("layer", "normed")
PRECISIONS = ("float32", "bfloat16")  # what the model computes in; not in the cache key (cached runs use fp32)


class SSLEncoder:
    """Callable wave [N] (float32, 16 kHz) -> hidden states [S, T, D] (S = transformer layers + 1)."""

    modality = "audio"

    def __init__(self, model_dir: str | os.PathLike, dtype: str = "float16", chunk_seconds: float | None = None,
                 sample_rate: int = 16000, device: str | None = None, last_state: str = "layer",
                 layers="all", precision: str = "float32"):
        if dtype not in _DTYPES:
            raise ValueError(f"unknown dtype {dtype!r}: use one of {_DTYPES}")
        if precision not in PRECISIONS:
            raise ValueError(f"unknown precision {precision!r}: use one of {PRECISIONS}")
        if last_state not in LAST_STATES:
            raise ValueError(f"unknown last_state {last_state!r}: use one of {LAST_STATES}")
        if chunk_seconds is not None and chunk_seconds < 1.0:
            raise ValueError(f"chunk_seconds must be at least 1 second (or None), got {chunk_seconds}")
        self.model_dir = require_model_dir(model_dir, "SSL speech model")
        transformers = offline_transformers()
        import torch

        self._torch = torch
        self._transformers = transformers
        self._model = None  # loaded on first use: a run served entirely from the cache never loads it
        self.device = device or default_device()
        self.precision = precision
        self.extractor = None
        if (self.model_dir / "preprocessor_config.json").is_file():
            self.extractor = transformers.AutoFeatureExtractor.from_pretrained(self.model_dir,
                                                                               local_files_only=True)
            expected = getattr(self.extractor, "sampling_rate", sample_rate)
            if expected != sample_rate:
                raise ValueError(f"{self.model_dir}: the model expects {expected} Hz audio, "
                                 f"but sample_rate={sample_rate}")
        self.sample_rate = sample_rate
        self.dtype = dtype
        self.chunk_seconds = chunk_seconds
        self.name = f"ssl-{self.model_dir.name}"
        self.last_state = last_state
        # last_state is in the key, so features cached before state L was pinned are not reused.
        self.settings = {"dtype": dtype, "chunk_seconds": chunk_seconds, "sample_rate": sample_rate,
                         "last_state": last_state}
        self.config = json.loads((self.model_dir / "config.json").read_text(encoding="utf-8"))
        self.layers = self._check_layers(layers)
        if self.layers != "all":
            self.settings["layers"] = self.layers
        self.fingerprint = fingerprint(self.model_dir)

    def _check_layers(self, layers):
        n_states = int(self.config.get("num_hidden_layers", 0)) + 1
        if layers in ("all", "last"):
            return layers
        if isinstance(layers, (list, tuple)) and layers and \
                all(isinstance(i, int) and not isinstance(i, bool) and 0 <= i < n_states for i in layers):
            return [int(i) for i in layers]
        raise ValueError(f"SSL layers must be 'all', 'last' or a list of hidden-state indices 0..{n_states - 1} "
                         f"({self.model_dir.name} has {n_states} states), got {layers!r}")

    def n_states(self) -> int:
        """Hidden states per frame in the output (L + 1 for 'all')."""
        if self.layers == "all":
            return int(self.config.get("num_hidden_layers", 0)) + 1
        return 1 if self.layers == "last" else len(self.layers)

    def _conv(self) -> list[tuple[int, int]]:
        if not {"hidden_size", "conv_kernel", "conv_stride"} <= set(self.config):
            raise ValueError(f"{self.model_dir / 'config.json'}: no hidden_size, conv_kernel and conv_stride to "
                             "take the frame arithmetic from (expected a wav2vec2, WavLM or HuBERT config)")
        return list(zip(self.config["conv_kernel"], self.config["conv_stride"]))

    def frames(self, n_samples):
        """Frames the CNN makes of n_samples (an int, or an integer array / tensor of lengths): each conv layer
        maps n to (n - kernel) // stride + 1, floored at 0 (see the module docstring)."""
        frames = n_samples
        for kernel, stride in self._conv():
            frames = (frames - kernel) // stride + 1
            frames = frames * (frames > 0)
        return frames

    @property
    def frames_per_second(self) -> float:
        """Frames per second of audio: sample_rate over the product of the CNN's strides."""
        return self.sample_rate / float(np.prod([stride for _, stride in self._conv()]))

    @property
    def hidden_size(self) -> int:
        return int(self.config["hidden_size"])

    @property
    def takes_attention_mask(self) -> bool:
        """Whether a padded batch goes through in one pass with an attention mask (see the module docstring)."""
        if self.extractor is not None and hasattr(self.extractor, "return_attention_mask"):
            return bool(self.extractor.return_attention_mask)
        return self.config.get("feat_extract_norm") == "layer"

    def output_bytes(self, seconds: float) -> int:
        """Bytes of one utterance's output, from config.json (see the module docstring)."""
        frames = int(self.frames(int(seconds * self.sample_rate)))
        return frames * self.n_states() * self.hidden_size * np.dtype(self.dtype).itemsize

    @property
    def model(self):
        if self._model is None:
            self._model = load_model(self._transformers, self.model_dir, self.device).to(
                getattr(self._torch, self.precision))
        return self._model

    def use_model(self, model) -> "SSLEncoder":
        """Encode with an already built model instead of the folder's weights, e.g. WavLM-Large built from its
        config alone with random weights (sercore.gpucheck.online_ssl, benchmarks/ssl_scale.py: nothing is
        written or loaded); frozen and in eval mode as load_model leaves a loaded one, in this precision."""
        self._model = model.eval().requires_grad_(False).to(self.device, getattr(self._torch, self.precision))
        return self

    def frame_count(self, n_samples: int) -> int:
        """Frames the model's CNN produces from n_samples (what T will be without chunking)."""
        return int(self.frames(int(n_samples)))

    def normalise(self, wave: np.ndarray) -> np.ndarray:
        """The wave as the model's input (see the module docstring), float32 [N]."""
        if self.extractor is not None:
            values = self.extractor(wave, sampling_rate=self.sample_rate, return_tensors="np")["input_values"]
            return np.asarray(values, dtype=np.float32)[0]
        return (wave - wave.mean()) / np.sqrt(wave.var() + 1e-7)

    def _chunks(self, wave: np.ndarray) -> list[np.ndarray]:
        if self.chunk_seconds is None:
            return [wave]
        size = int(self.chunk_seconds * self.sample_rate)
        starts = list(range(0, wave.size, size))
        if len(starts) > 1 and wave.size - starts[-1] < self.sample_rate:
            starts.pop()
        ends = starts[1:] + [wave.size]
        return [wave[a:b] for a, b in zip(starts, ends)]

    def __call__(self, wave: np.ndarray) -> np.ndarray:
        wave = np.asarray(wave, dtype=np.float32)
        if wave.ndim != 1:
            raise ValueError(f"expected a mono wave [N], got shape {wave.shape}")
        if self.frame_count(wave.size) < 1:
            # A FeatureError: `extract` leaves that one row out and counts it instead of stopping.
            raise FeatureError(f"audio of {wave.size} samples is too short for {self.model_dir.name}: "
                               f"its CNN needs enough samples for one frame (about 25 ms)", TOO_SHORT)
        torch = self._torch
        states = []
        for chunk in self._chunks(wave):
            inputs = torch.from_numpy(self.normalise(chunk))[None].to(self.device)
            states.append(self._forward(inputs, None)[0])
        out = torch.cat(states, dim=1)
        return out.to(getattr(torch, self.dtype)).cpu().numpy()

    def states(self, inputs, lengths):
        """(hidden states [B, S, T, D] in the model's precision, frame mask [B, T] True = real) of a batch of
        normalised waves zero-padded to [B, N] with their lengths [B] in samples (see the module docstring).
        Runs under inference_mode: the result is an inference tensor (copy it before autograd sees it)."""
        torch = self._torch
        lengths = lengths.to(torch.long)
        frames = self.frames(lengths.cpu())
        if int(frames.min()) < 1:
            raise FeatureError(f"a wave of {int(lengths.min())} samples is too short for {self.model_dir.name}: "
                               f"its CNN needs enough samples for one frame (about 25 ms)", TOO_SHORT)
        longest = int(frames.max())
        with torch.inference_mode():
            inputs = inputs.to(self.device)
            if bool((lengths == inputs.shape[1]).all()):
                out = self._forward(inputs, None)
            elif self.takes_attention_mask:
                mask = torch.arange(inputs.shape[1], device=inputs.device)[None] < lengths.to(inputs.device)[:, None]
                out = self._forward(inputs, mask.to(torch.long))
            else:  # one at a time: a group norm over time would see the padding (module docstring)
                alone = [self._forward(inputs[i:i + 1, :int(n)], None)[0] for i, n in enumerate(lengths)]
                out = inputs.new_zeros((len(alone), alone[0].shape[0], longest, alone[0].shape[-1]),
                                       dtype=alone[0].dtype)
                for i, one in enumerate(alone):
                    out[i, :, :one.shape[1]] = one
            out = out[:, :, :longest]
            mask = torch.arange(longest, device=out.device)[None] < frames.to(out.device)[:, None]
            out = out * mask[:, None, :, None].to(out.dtype)  # padded frames zero, as a padded cached batch
        return out, mask

    def _forward(self, inputs, attention_mask):
        """[B, S, T, D] hidden states of the kept layers for inputs [B, N] (see the module docstring)."""
        torch = self._torch
        last_layer = self._last_layer()
        captured = []
        hook = last_layer.register_forward_hook(
            lambda module, args, output: captured.append(output[0] if isinstance(output, tuple) else output))
        try:
            with torch.inference_mode():
                inputs = inputs.to(getattr(torch, self.precision))
                extra = {} if attention_mask is None else {"attention_mask": attention_mask}
                outputs = self.model(inputs, output_hidden_states=True, **extra)
                if not getattr(outputs, "hidden_states", None) or len(captured) != 1:
                    raise TypeError(f"{self.model_dir}: the model returned no hidden states or did not run "
                                    f"its last layer once; expected a speech encoder such as Wav2Vec2Model, "
                                    f"WavLMModel or HubertModel")
                hidden = list(outputs.hidden_states)
                # see the module docstring: the layer's own output, or the encoder's normalised one
                hidden[-1] = captured[0] if self.last_state == "layer" else outputs.last_hidden_state
                out = torch.stack(hidden, dim=1)
        finally:
            hook.remove()
        if self.layers != "all":
            out = out[:, -1:] if self.layers == "last" else out[:, self.layers]
        return out

    def _last_layer(self):
        layers = getattr(getattr(self.model, "encoder", None), "layers", None)
        if not layers:
            raise TypeError(f"{self.model_dir}: no encoder.layers in {type(self.model).__name__}; expected a "
                            f"speech encoder such as Wav2Vec2Model, WavLMModel or HubertModel")
        return layers[-1]
