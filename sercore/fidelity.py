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
_KS_CODE = "HappyColor/Key-Sparse-Transformer"
KEYSPARSE: list[Deviation] = [
    Deviation(
        "ks-transformer", "model.ks-transformer.max_frames",
        paper="not described in the text",
        code=f"every sample is cut to its first 460 wav2vec frames or zero-padded to 460, at training and test "
             f"({_KS_CODE} utils/dataset.py pad_input, config/iemocap_feature_config.json length 460), so "
             "L and k = int(L * keep_rate) are constants and no output depends on its batch-mates",
        default=460,
        alternatives=(None,),
        note="460 frames are 4.6 s of wav2vec 1.0 and of sercore's log-Mel (100 frames/s), 9.2 s of a 50 frames/s "
             "SSL model. None: L is the batch's padded length, so k and an utterance's output depend on its "
             "batch (batch-independent again only with padding='masked' and ks_options k_from='real', "
             "padded_queries_vote=False). On sercore's generated `localized` corpus (about 6-9 s: the emotional "
             "phrase follows two neutral sentences in about a third of the utterances) the first 4.6 s miss "
             "some phrases, as the code's cut would."),
    Deviation(
        "ks-transformer", "model.ks-transformer.max_tokens",
        paper="not described in the text",
        code=f"the first 20 RoBERTa tokens, zero-padded to 20 ({_KS_CODE} utils/dataset.py pad_input, "
             "config/iemocap_feature_config.json length 20)",
        default=20,
        alternatives=(None,)),
    Deviation(
        "ks-transformer", "train.by_study.ks-transformer.train_crop",
        paper="not described in the text",
        code=f"training takes the same first-460-frames input as the test, every epoch ({_KS_CODE} "
             "utils/dataset.py pad_input): no random crop, zero padding, no repetition",
        default="first",
        alternatives=("random",),
        note="random: sercore's random crop of crop_seconds, repetition-padded (the main paper's); crop_seconds "
             "is 9.2 under `paper` (460 frames of a 50 frames/s SSL model) and 4.6 under default / smoke "
             "(460 log-Mel frames), so the crop is the model's max_frames."),
    Deviation(
        "ks-transformer", "model.ks-transformer.positions",
        paper="not described beyond standard Transformer layers",
        code=f"sinusoidal tables of 2000 positions are nn.Parameter(requires_grad=False), then _reset_parameters "
             f"applies xavier_uniform_ to every parameter of dim > 1, tables included ({_KS_CODE} "
             "model/KS_transformer_block.py, model/transformer.py): small frozen random vectors, "
             "|pe| <= sqrt(6 / (2000 + width)) = 0.049 at 512; positions on the query and key, the "
             "cross-attention value is the normed key input without them",
        default="code",
        alternatives=("sinusoidal",),
        note="sinusoidal: the unit-amplitude sinusoids the tables were built as. Under both, cross-attention "
             "values carry no positions, as in the code (sercore used to add them)."),
    Deviation(
        "ks-transformer", "model.ks-transformer.padding",
        paper="not described in the text",
        code=f"only a key padding mask, only in the encoders and the cross-attention ({_KS_CODE} "
             "model/KS_transformer.py, model/CCAB_block.py): padded query rows are computed like real ones, "
             "vote for key importance, count in L, and enter the CCAB self-attention, the final layers and "
             "the unmasked mean over all 460 / 20 positions",
        default="code",
        alternatives=("masked",),
        note="masked: padded positions excluded everywhere (keys masked, padded query rows zeroed, masked mean). "
             "KeySparseAttention's own defaults are the code's too (k_from='padded', padded_queries_vote=True, "
             "renormalize=False; ks_options changes them)."),
    Deviation(
        "ks-transformer", "model.ks-transformer.encoder_attention",
        paper="vanilla Transformer self-attention layers",
        code=f"Multihead_attention with biased q, k, v projections and dropout 0.1 on the weights ({_KS_CODE} "
             "model/transformer.py)",
        default="code",
        alternatives=("softmax",),
        note="code: KeySparseAttention at keep_rate 1 (every key kept = softmax attention). softmax: sercore's "
             "softmax mixer (bias-free q, k, v, no weight dropout, padded rows zeroed), with padding='masked' "
             "only."),
    Deviation(
        "ks-transformer", "model.ks-transformer.residual_twice",
        paper="one residual around the stack of CCABs",
        code=f"the CCAB input is added twice: in CCABs.forward and again in KS_transformer.forward ({_KS_CODE} "
             "model/CCAB_block.py, model/KS_transformer.py)",
        default=True,
        alternatives=(False,)),
    Deviation(
        "ks-transformer", "train.by_study.ks-transformer.cosine_per",
        paper="cosine learning-rate schedule over 120 epochs",
        code=f"CosineAnnealingLR(T_max=EPOCH) stepped once after each epoch ({_KS_CODE} train.py)",
        default="epoch",
        alternatives=("step",),
        note="step: one scheduler step per optimizer step over the run's steps (sercore's cosine before). "
             "The CPU profiles keep the TrainSettings value, unused there (their schedule is plateau).",
        profiles={"default": "step", "smoke": "step"}),
    Deviation(
        "ks-transformer", "train.by_study.ks-transformer.cosine_eta_min_ratio",
        paper="cosine learning-rate schedule",
        code=f"eta_min = lr / 1000 ({_KS_CODE} train.py)",
        default=0.001,
        alternatives=(0.0,),
        note="0.0: anneal to zero (sercore's cosine before). Unused under the CPU profiles (plateau).",
        profiles={"default": 0.0, "smoke": 0.0}),
    Deviation(
        "ks-transformer", "train.by_study.ks-transformer.schedule",
        paper="cosine over 120 epochs, SGD momentum 0.9, lr 5e-4",
        code=f"SGD(momentum=0.9, lr=5e-4, no weight decay) + CosineAnnealingLR ({_KS_CODE} train.py, "
             "config/config.py)",
        default="cosine",
        note="The CPU profiles train the KS model with their AdamW + plateau settings and a step cap.",
        profiles={"default": "plateau", "smoke": "plateau"}),
    Deviation(
        "ks-transformer", "train.by_study.ks-transformer.batch_size",
        paper="batch size 16",
        code=f"batch_size 16 per process, two GPUs (device_id '0,2', DistributedSampler + DDP): 32 per "
             f"optimizer step ({_KS_CODE} config/config.py, train.py, utils/model.py; test_a_sample.py's "
             "checkpoint path says iemocap_e120_b32)",
        default=32,
        alternatives=(16,),
        profiles={"default": 16, "smoke": 16}),
    Deviation(
        "ks-transformer", "train.by_study.ks-transformer.class_weights",
        paper="not described in the text",
        code=f"torch.nn.CrossEntropyLoss() without class weights ({_KS_CODE} train.py)",
        default=False,
        alternatives=(True,),
        profiles={"default": True, "smoke": True}),
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
