"""One registry of every place where a paper's text, its public code and sercore differ.

Rule: where the paper text and its public code disagree, sercore has a named setting whose default is what
the public code did; the other reading (or a cheaper choice for a CPU profile) is a named alternative. Each
entry says where its default lives, so tests/test_fidelity_registry.py holds the library to this list, and the
book's Fidelity page renders it.

`setting` says where the value lives:
  "model.<study>.<option>"            a build_model(study) option: its default (sercore.models.model_options)
  "train.<key>"                       a TrainSettings default
  "train.by_study.<study>.<key>"      the `paper` profile's train.by_study entry for that study
  "features.<key>[.<key>]"            the `paper` profile's features section
  "bench.<key>"                       the `paper` profile's bench section
`default` is the value the code-faithful protocol uses there (under the `paper` profile: a profile value that
is set must equal it). `profiles` lists where a CPU profile runs something else on purpose, e.g.
{"default": "cheaper value"}.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Deviation:
    study: str                # fusion | ks-transformer | area-cnn | multitask | dimensional | efficiency
    setting: str              # where the value lives (see the module docstring)
    paper: str                # what the paper's text says
    code: str                 # what the public code does, naming its file
    default: Any              # sercore's default: the code's behaviour unless `note` says why not
    alternatives: tuple = ()  # other values, each a named reading
    note: str = ""
    profiles: dict = field(default_factory=dict)  # profile -> value it runs instead, on purpose


# The main paper (How Attention Shapes Emotion; github marccasals98/AttentionAlternatives).
FUSION: list[Deviation] = [
]

# Key-Sparse Transformer (ICASSP 2022; github HappyColor/Key-Sparse-Transformer).
KEYSPARSE: list[Deviation] = [
]

# Multiscale area attention + VTLP (ICASSP 2021; github lessonxmk/Optimized_attention_for_SER, nlpaug VtlpAug).
AREA: list[Deviation] = [
]

# Self-attention + gender auxiliary task (Li, Zhao, Kawahara, Interspeech 2019; no public code).
MULTITASK: list[Deviation] = [
]

# Dimensional SER with transformers (Wagner et al. 2023; audeering wav2vec2-large-robust-12-ft-emotion-msp-dim).
DIMENSIONAL: list[Deviation] = [
]

# The main paper's efficiency protocol (latency and memory of the seq2seq call).
EFFICIENCY: list[Deviation] = [
]

DEVIATIONS: list[Deviation] = FUSION + KEYSPARSE + AREA + MULTITASK + DIMENSIONAL + EFFICIENCY
