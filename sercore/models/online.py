"""A model fed by a frozen SSL encoder inside its forward pass: the model side of online SSL (the data side, the
waveform crops and whole-utterance batches, is sercore.train.online, which re-exports this class).

It lives here, outside sercore.train, so that it imports without the audio packages: the GPU check's
online-SSL step (sercore.gpucheck.online_ssl) runs it on a machine that has torch and transformers but no
soundfile, which sercore.train's data layer needs.
"""

from __future__ import annotations

import torch
from torch import nn


class OnlineSSLModel(nn.Module):
    """`model` fed by a frozen SSL encoder: forward(batch) encodes batch["speech"] (waves [B, N], mask [B, N])
    into hidden states [B, S, T, D] (float32) and a frame mask [B, T], then calls model on them.

    Moving the module (.to(device)) moves the encoder, in bf16 on CUDA and fp32 on the CPU.
    The encoder's weights are not part of this module (not in parameters(), state_dict() or the optimizer;
    load_model froze them): state_dict and load_state_dict are the inner model's, so a checkpoint of an
    online run loads into the same model fed cached features, and the reverse."""

    def __init__(self, model: nn.Module, encoder):
        super().__init__()
        self.model = model
        self.encoder = encoder  # a plain object, not a submodule (see the class docstring)
        self.inputs = model.inputs

    def forward(self, batch: dict) -> dict:
        lengths = batch["speech_mask"].sum(dim=1)
        states, mask = self.encoder.states(batch["speech"], lengths)
        # out of inference mode: a normal fp32 tensor autograd may save (an inference tensor cannot be)
        states = states.to(torch.float32, copy=True)
        return self.model({**batch, "speech": states, "speech_mask": mask.clone()})

    def loss(self, batch: dict, outputs: dict, class_weights=None):
        return self.model.loss(batch, outputs, class_weights=class_weights)

    def state_dict(self, *args, **kwargs):
        return self.model.state_dict(*args, **kwargs)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        return self.model.load_state_dict(state_dict, strict=strict, assign=assign)

    def _apply(self, fn, *args, **kwargs):
        # .to(device) moves the encoder with the model: bf16 on CUDA, fp32 on the CPU (module docstring)
        super()._apply(fn, *args, **kwargs)
        probe = next(self.model.parameters(), None)
        if probe is None:
            return self
        precision = "bfloat16" if probe.device.type == "cuda" else "float32"
        if (str(probe.device), precision) != (str(self.encoder.device), self.encoder.precision):
            self.encoder.device, self.encoder.precision = str(probe.device), precision
            if self.encoder._model is not None:
                self.encoder._model.to(probe.device, getattr(torch, self.encoder.precision))
        return self
