"""Encoders by name: "logmel", "ssl:<local model dir>", "text", "text:<local model dir>".

An encoder is a callable (wave or transcript -> array) with the attributes the cache keys on:
`name` (also its cache folder), `settings` (every option that changes the output, defaults filled in, so
spelling a default out does not change the key), `fingerprint` (the weights or the code version) and
`modality` ("audio", with a `sample_rate` and a `frames_per_second`, or "text"). Training takes the frame
rate of its speech features from the encoder that made them (log-Mel: 1000 / hop_ms; SSL: the CNN's strides).
"""

from __future__ import annotations

import inspect

import numpy as np

from sercore.features.logmel import log_mel

# Bump when log_mel's arithmetic changes, so old cache entries stop matching.
LOGMEL_VERSION = "logmel-v1"


class LogMelEncoder:
    """Callable wave [N] -> log-Mel [T, n_mels] float32, with any keyword of `log_mel` as a setting."""

    modality = "audio"
    fingerprint = LOGMEL_VERSION

    def __init__(self, **settings):
        parameters = inspect.signature(log_mel).parameters
        options = {name: p.default for name, p in parameters.items() if name != "wave"}
        unknown = sorted(set(settings) - set(options))
        if unknown:
            raise TypeError(f"unknown log-Mel settings {unknown}; valid: {sorted(options)}")
        for name, value in settings.items():
            # 25 and 25.0 must give the same cache key: follow the type of the default.
            options[name] = float(value) if isinstance(options[name], float) and value is not None else value
        log_mel(np.zeros(1600, dtype=np.float32), **options)  # fail on bad values now, not on row 1000
        self.settings = options
        self.sample_rate = options["sample_rate"]
        self.name = "logmel"

    def __call__(self, wave: np.ndarray) -> np.ndarray:
        return log_mel(wave, **self.settings)

    @property
    def frames_per_second(self) -> float:
        """Frames per second of audio: one per hop."""
        return 1000.0 / self.settings["hop_ms"]

    def output_bytes(self, seconds: float) -> int:
        """Bytes of one utterance's log-Mel (float32, centred frames: one per hop plus one)."""
        return (int(seconds * 1000.0 / self.settings["hop_ms"]) + 1) * self.settings["n_mels"] * 4


def make_encoder(encoder, **settings):
    """An encoder from its name (see the module docstring) and settings; an encoder object passes through."""
    if not isinstance(encoder, str):
        if settings:
            raise TypeError("settings go to the encoder's constructor; pass them there, not with an encoder object")
        return encoder
    kind, _, path = encoder.partition(":")
    if kind == "logmel" and not path:
        return LogMelEncoder(**settings)
    if kind == "ssl":
        if not path:
            raise ValueError('the SSL encoder needs a local model folder: "ssl:/path/to/model"')
        from sercore.features.ssl import SSLEncoder

        return SSLEncoder(path, **settings)
    if kind == "text":
        from sercore.features.text import TextEncoder

        return TextEncoder(path or None, **settings)
    raise ValueError(f"unknown encoder {encoder!r}: use 'logmel', 'ssl:<local model dir>', 'text' "
                     f"or 'text:<local model dir>'")
