"""Online SSL: the frozen speech model runs inside the training step, on waveform crops (the main paper's protocol).

features.ssl.mode (one switch, for models that read SSL hidden states):
  "online"   training items are waveform crops; the frozen SSL model (sercore.features.ssl.SSLEncoder.states)
             encodes each batch inside the step under torch.inference_mode, in bf16 on CUDA and fp32 on the
             CPU, and its hidden states go to the model's learnable layer weights and the rest of the model.
             Nothing is cached; memory does not grow with the corpus. This is what the main paper's code does
             (AttentionAlternatives, scripts/model.py and scripts/speech_feature_extractor.py: torchaudio's
             extract_features on the crop; scripts/data.py: the crop).
  "cached"   every utterance is encoded once, whole, and its hidden states kept in the memory-mapped feature
             store (sercore.features.store); training crops frames of those states. It approximates online:
             a cached crop's frames saw the context outside the crop (the utterance around it), while online
             the model sees only the crop, so frames near a crop's edges differ (sercore.fidelity records it).
  unset      online for SSL on CUDA, cached elsewhere (a CPU pays the SSL forward at every step).
The mode used is in metrics.json (parameters.features.ssl.mode and data.ssl_mode).

The crop (WaveCropItems, the code's TrainDataset.process_waveform with padding_type repetition_pad, the
setting of its published scripts): crop = int(crop_seconds x sample_rate) samples; a shorter wave is first
repeated end to end ceil(crop / n) times; the start is then uniform over [0, len - crop]. sercore draws it
from numpy Generator([seed, epoch, row]) instead of Python's global random, so a resumed run draws the same
crops. train_crop="first" (the Key-Sparse code's pad_input): the first crop samples, zero-padded and masked.
Each crop is normalised on its own (SSLEncoder.normalise), as the code's model normalises the input it gets.

Evaluation (WaveEvalItems): whole utterances, each normalised whole, zero-padded, batched longest first to at
most eval_batch_size utterances and eval_max_frames padded SSL frames; SSLEncoder.states passes the padding
mask to models that take one (and encodes the others one at a time), and the frame mask comes from the
waveform lengths through the CNN's arithmetic (SSLEncoder.frames), so the model sees exactly the frames of
each utterance encoded alone.

Audio is read per batch (sercore.data.audio.read_audio). Before training every row's header is checked
(inspect_audio): a missing, unreadable or empty file, or one too short for one SSL frame, is left out and
counted as "at extraction: <reason>" like a cached run's failed extraction; a file whose samples turn out
non-finite when a batch reads it stops the run with read_audio's one-line error naming it.
"""

from __future__ import annotations

import math
from typing import Iterator, Sequence

import numpy as np
import torch

from sercore.data.audio import SAMPLE_RATE, AudioError, inspect_audio, read_audio
from sercore.features.ssl import TOO_SHORT
from sercore.models.online import OnlineSSLModel  # noqa: F401 (its home outside sercore.train: see there)
from sercore.train.datasets import CropBase, Utterances, batch_plan, targets, text_batch

MODES = ("online", "cached")


def resolve_mode(mode, device: torch.device) -> str:
    """The SSL mode of a run: `mode` when set, else online on CUDA and cached elsewhere (module docstring)."""
    if mode is None:
        return "online" if torch.device(device).type == "cuda" else "cached"
    if mode not in MODES:
        raise ValueError(f"features.ssl.mode={mode!r}: must be one of {', '.join(MODES)} (or unset: online on "
                         "CUDA, cached elsewhere)")
    return mode


def resampled_length(frames: int, from_rate: int, to_rate: int) -> int:
    """Samples read_audio returns for `frames` at from_rate (resample_poly's output length)."""
    if from_rate == to_rate:
        return int(frames)
    common = math.gcd(int(from_rate), int(to_rate))
    return math.ceil(frames * (to_rate // common) / (from_rate // common))


class Waveforms:
    """The rows' audio as a lazy sequence: [i] reads row i's wave (float32 [N] at sample_rate), shape_of(i) is
    (N,) from the header. Rows whose header fails, or too short for one frame of `encoder`, are in `failed`
    ({position: reason}) and must be left out (subset) before use."""

    def __init__(self, paths: Sequence, encoder, sample_rate: int = SAMPLE_RATE):
        self.paths, self.sample_rate = [str(p) for p in paths], sample_rate
        self.lengths = np.zeros(len(self.paths), dtype=np.int64)
        self.failed: dict[int, str] = {}
        for i, path in enumerate(self.paths):
            try:
                info = inspect_audio(path)
            except AudioError as error:
                self.failed[i] = error.reason
                continue
            self.lengths[i] = resampled_length(info.frames, info.sample_rate, sample_rate)
            if int(encoder.frames(int(self.lengths[i]))) < 1:
                self.failed[i] = TOO_SHORT

    @classmethod
    def _of(cls, paths, lengths, sample_rate):
        out = cls.__new__(cls)
        out.paths, out.lengths, out.sample_rate, out.failed = list(paths), np.asarray(lengths), sample_rate, {}
        return out

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> np.ndarray:
        return read_audio(self.paths[i], self.sample_rate)

    def shape_of(self, i: int) -> tuple[int]:
        return (int(self.lengths[i]),)

    def subset(self, rows: Sequence[int]) -> "Waveforms":
        rows = list(rows)
        return Waveforms._of([self.paths[r] for r in rows], self.lengths[rows], self.sample_rate)


def crop_wave(wave: np.ndarray, crop: int, rng: np.random.Generator) -> np.ndarray:
    """The code's random crop (module docstring): repeat a short wave ceil(crop / n) times, then a uniform start."""
    if crop > wave.size:
        wave = np.tile(wave, math.ceil(crop / wave.size))
    start = int(rng.integers(0, wave.size - crop + 1))
    return wave[start:start + crop]


def _pad(waves: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-padded [B, N] and the sample mask [B, N] (True = real)."""
    longest = max(w.size for w in waves)
    out = np.zeros((len(waves), longest), dtype=np.float32)
    mask = np.zeros((len(waves), longest), dtype=bool)
    for i, w in enumerate(waves):
        out[i, :w.size], mask[i, :w.size] = w, True
    return torch.from_numpy(out), torch.from_numpy(mask)


class WaveCropItems(CropBase):
    """Training items = utterances; item i of epoch e is a waveform crop of `crop_samples` samples of row rows[i]
    (module docstring). batch()["speech"] is [B, crop] normalised samples and "speech_mask" [B, crop];
    OnlineSSLModel encodes them."""

    def __init__(self, data: Utterances, rows: Sequence[int], crop_samples: int, seed: int, encoder,
                 start: str = "random"):
        super().__init__(data, rows, crop_samples, seed, start)
        self.encoder = encoder

    def crop_row(self, row, epoch: int) -> np.ndarray:
        wave = self.data.speech[row]
        crop = wave[:self.crop] if self.start == "first" else crop_wave(wave, self.crop, self.rng(epoch, row))
        return self.encoder.normalise(crop)

    def stack(self, crops: list) -> tuple[torch.Tensor, torch.Tensor]:
        return _pad(crops)


class WaveEvalItems:
    """Whole utterances in batches, as sercore.train.datasets.EvalItems (same interface and batching rule,
    datasets.batch_plan, with lengths counted in SSL frames), but batch()["speech"] holds normalised waves [B, N]."""

    def __init__(self, data: Utterances, rows: Sequence[int], batch_size: int, encoder, max_frames: int | None = None):
        if batch_size < 1 or (max_frames is not None and max_frames < 1):
            raise ValueError(f"WaveEvalItems: batch_size and max_frames must be >= 1, got {batch_size}, {max_frames}")
        self.data, self.rows, self.encoder, self.skipped_rows = data, np.asarray(rows, dtype=np.int64), encoder, 0
        frames = [int(encoder.frames(data.speech.shape_of(r)[0])) for r in self.rows]
        self.plan = batch_plan(frames, batch_size, max_frames)

    def __len__(self) -> int:
        return len(self.rows)

    def n_batches(self) -> int:
        return len(self.plan)

    def batches(self) -> Iterator[dict[str, torch.Tensor]]:
        for positions in self.plan:
            rows = self.rows[positions]
            speech, mask = _pad([self.encoder.normalise(self.data.speech[r]) for r in rows])
            yield {"speech": speech, "speech_mask": mask, **text_batch(self.data, rows),
                   **targets(self.data, rows), "utt_index": torch.tensor(positions, dtype=torch.int64)}
