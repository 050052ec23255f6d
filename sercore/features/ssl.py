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
T = the model's frame count (about 50 per second: 20 ms stride), D = hidden size. Stored as float16 by
default, halving disk and memory (a 10 s utterance of a 25 x 1024 model is ~25 MB in float16); pass
dtype="float32" to keep full precision.

Layers kept (`layers`): "all" (default, the S = L + 1 states above), "last" (state L only, [1, T, D]: what
the dimensional study and a KS-Transformer with ssl_layer=-1 read; 1/(L+1) of the disk) or a list of state
indices 0..L, kept in that order. It is part of the cache key ("all" leaves the key as it was before the
option existed, so existing caches stay valid). `output_bytes(seconds)` is what one utterance takes, from
config.json alone (no model load): frames from the CNN's kernels and strides x states kept x D x itemsize;
sercore.features.store checks it against the free disk before extracting.

Input normalisation: the folder's feature extractor (preprocessor_config.json) when present; otherwise
zero mean, unit variance per utterance, as Wav2Vec2FeatureExtractor does with do_normalize=True.

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


class SSLEncoder:
    """Callable wave [N] (float32, 16 kHz) -> hidden states [S, T, D] (S = transformer layers + 1)."""

    modality = "audio"

    def __init__(self, model_dir: str | os.PathLike, dtype: str = "float16", chunk_seconds: float | None = None,
                 sample_rate: int = 16000, device: str | None = None, last_state: str = "layer",
                 layers="all"):
        if dtype not in _DTYPES:
            raise ValueError(f"unknown dtype {dtype!r}: use one of {_DTYPES}")
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

    def output_bytes(self, seconds: float) -> int:
        """Bytes of one utterance's output, from config.json (see the module docstring)."""
        if not {"hidden_size", "conv_kernel", "conv_stride"} <= set(self.config):
            raise ValueError(f"{self.model_dir / 'config.json'}: no hidden_size, conv_kernel and conv_stride to "
                             "estimate the feature size from (expected a wav2vec2, WavLM or HuBERT config)")
        frames = int(seconds * self.sample_rate)
        for kernel, stride in zip(self.config.get("conv_kernel", ()), self.config.get("conv_stride", ())):
            frames = max((frames - kernel) // stride + 1, 0)
        return frames * self.n_states() * int(self.config["hidden_size"]) * np.dtype(self.dtype).itemsize

    @property
    def model(self):
        if self._model is None:
            self._model = load_model(self._transformers, self.model_dir, self.device)
        return self._model

    def frame_count(self, n_samples: int) -> int:
        """Frames the model's CNN produces from n_samples (what T will be without chunking)."""
        return int(self.model._get_feat_extract_output_lengths(self._torch.tensor(n_samples)))

    def _normalise(self, wave: np.ndarray) -> np.ndarray:
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
        last_layer = self._last_layer()
        captured = []
        hook = last_layer.register_forward_hook(
            lambda module, args, output: captured.append(output[0] if isinstance(output, tuple) else output))
        states = []
        try:
            with torch.inference_mode():
                for chunk in self._chunks(wave):
                    inputs = torch.from_numpy(self._normalise(chunk))[None].to(self.device)
                    captured.clear()
                    outputs = self.model(inputs, output_hidden_states=True)
                    if not getattr(outputs, "hidden_states", None) or len(captured) != 1:
                        raise TypeError(f"{self.model_dir}: the model returned no hidden states or did not run "
                                        f"its last layer once; expected a speech encoder such as Wav2Vec2Model, "
                                        f"WavLMModel or HubertModel")
                    hidden = list(outputs.hidden_states)
                    # see the module docstring: the layer's own output, or the encoder's normalised one
                    hidden[-1] = captured[0] if self.last_state == "layer" else outputs.last_hidden_state
                    states.append(torch.stack(hidden, dim=0)[:, 0])
        finally:
            hook.remove()
        out = torch.cat(states, dim=1)
        if self.layers != "all":
            out = out[-1:] if self.layers == "last" else out[self.layers]
        return out.to(getattr(torch, self.dtype)).cpu().numpy()

    def _last_layer(self):
        layers = getattr(getattr(self.model, "encoder", None), "layers", None)
        if not layers:
            raise TypeError(f"{self.model_dir}: no encoder.layers in {type(self.model).__name__}; expected a "
                            f"speech encoder such as Wav2Vec2Model, WavLMModel or HubertModel")
        return layers[-1]
