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
    Deviation(
        study="fusion", setting="model.fusion.head_blocks",
        paper="an MLP classifier on the attention-pooled vector (8 classes)",
        code="scripts/classifier_layer.py ClassifierLayer: Dropout(0.1), [Linear(1024,512), LayerNorm, GELU, "
             "Dropout], 4 x [Linear(512,512), LayerNorm, GELU, Dropout], Linear(512,8)",
        default=4,
        note="heads.FusionClassifier is that layout (head_width 512, head_blocks 4, head_dropout 0.1). An earlier "
             "layout without the Linear layers inside the blocks came from a misreading, not from the paper or "
             "the code, and was removed rather than kept as a setting."),
    Deviation(
        study="fusion", setting="model.fusion.layer_weighting",
        paper="learned weights that combine the frozen SSL encoder's layers",
        code="scripts/speech_feature_extractor.py: raw nn.Parameter weights initialised to 1/N (a softmax of a "
             "constant vector), multiplied in without a softmax, then LayerNorm (scripts/model.py)",
        default="raw", alternatives=("softmax",),
        note="\"softmax\": weights = softmax(logits), logits initialised to 0 (the SUPERB-style form sercore used "
             "before). Both start as the plain mean; they differ once trained (raw weights need not sum to 1)."),
    Deviation(
        study="fusion", setting="model.fusion.layers",
        paper="the SSL model's layers (WavLM-Large in the headline runs)",
        code="scripts/speech_feature_extractor.py: the N transformer-layer outputs of torchaudio's "
             "extract_features (N = 24 for Large models, 48 for XLSR-1B); the CNN output is not among them",
        default="transformer", alternatives=("all",),
        note="The cache holds L + 1 hidden states (ssl_layers = 25 for a Large model): \"transformer\" weighs "
             "states 1..L, \"all\" also the input of the first transformer layer (state 0)."),
    Deviation(
        study="fusion", setting="features.require_text_model",
        paper="frozen bert-large-uncased, last hidden state (roberta-large in the Key-Sparse Transformer)",
        code="scripts/text_feature_extractor.py: BERT_LARGE_UNCASED via torch.hub, output.last_hidden_state, "
             "then LayerNorm (scripts/model.py)",
        default=True, alternatives=(False,),
        note="Under `paper` a run with a text stream needs features.text_model_dir (a local bert-large-uncased "
             "or roberta-large folder) and fails in one line without it; false runs all-MiniLM-L6-v2 (384-d, "
             "projected to the model width). metrics.json data.text_encoder records which encoder ran.",
        profiles={"default": False, "smoke": False}),
    Deviation(
        study="fusion", setting="model.fusion.mechanism_options",
        paper="softmax attention against RetNet, GSA, FoX, KDA and LightNet, compared as mechanisms",
        code="scripts/poolings.py: softmax attention is bidirectional; the five fla layers run with their "
             "defaults, which are causal, so direction is confounded with mechanism",
        default=None, alternatives=({"bidirectional": True}, {"causal": True}),
        note="None: each mechanism's own default, as the code (softmax bidirectional, the fla-style five causal). "
             "{\"bidirectional\": True} runs a fla-style mixer both ways with the same weights; {\"causal\": "
             "True} makes softmax attention causal."),
    Deviation(
        study="fusion", setting="features.ssl.chunk_seconds",
        paper="a frozen SSL encoder on 5.5 s training crops",
        code="scripts/model.py, scripts/speech_feature_extractor.py: the SSL model runs inside the training step "
             "on each random 5.5 s waveform crop, so it sees only the crop",
        default=30,
        note="Not the code's behaviour, on purpose: sercore encodes each utterance once (in 30 s chunks) and "
             "caches the hidden states, then crops 5.5 s of frames, so a crop's frames saw their neighbours "
             "outside the crop. Encoding every crop anew would make each epoch cost the SSL model's forward pass. "
             "null (default, smoke): the whole utterance in one pass.",
        profiles={"default": None, "smoke": None}),
    Deviation(
        study="fusion", setting="features.ssl.last_state",
        paper="the outputs of the SSL model's transformer layers",
        code="scripts/speech_feature_extractor.py: torchaudio's extract_features, each layer's own output; for "
             "WavLM-Large the last one is taken before the encoder's final LayerNorm",
        default="layer", alternatives=("normed",),
        note="The cache's last state is read with a hook on the last layer, so it is the same under transformers "
             "4 (whose last hidden state had the final LayerNorm) and 5 (whose has not). \"normed\" stores "
             "last_hidden_state instead: what a released head that reads it sees (audeering's dimensional "
             "model reads last_hidden_state, so the dimensional study's layers=\"last\" matches it only "
             "with \"normed\")."),
    Deviation(
        study="fusion", setting="train.batch_size",
        paper="batch size 32",
        code="shs/mn5/attention_experiments/*.sh run scripts/train.py under torchrun with 4 processes and "
             "--training_batch_size 32; each process has its own DataLoader(shuffle=True) over the whole train "
             "set (no DistributedSampler) and the model is wrapped in DDP, so one optimizer step averages "
             "4 x 32 = 128 crops",
        default=32, alternatives=(128,),
        note="Found while reading the code; not yet decided. sercore's 32 is the global batch (split across "
             "processes under torchrun); batch_size=128 matches the code's crops per step, though not its "
             "duplicated sampling (each process drawing from the whole set)."),
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
