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
_AREA_CODE = "lessonxmk/Optimized_attention_for_SER"
_AREA = "code.sercore.attention.area:AreaAttention"
AREA: list[Deviation] = [
    Deviation(
        "area-cnn", "train.by_study.area-cnn.epochs",
        paper="3 x 3 areas with VTLP for the headline; sercore takes the epoch count from the code",
        code=f"{_AREA_CODE} area_train.py: Epochs = 100 (Adam 1e-4, batch 32)",
        default=100,
        note="The CPU profiles train far shorter (default: 300 steps at most).",
        profiles={"smoke": 30, "default": 8}),
    Deviation(
        "area-cnn", "train.by_study.area-cnn.vtlp_copies",
        paper="headline (WA 79.34 %, UA 77.54 %) with 3x3 areas and VTLP; a sweep shows more VTLP copies "
              "doing better",
        code=f"{_AREA_CODE} vtlpAug.py writes 7 warped copies of every wav; area_train.py with AUG=True "
             "adds ONE of them (the '.5' file) for each train and each dev file",
        default=1, alternatives=("0: no augmentation (the paper's 4x4-without-VTLP setting)",
                                 "k > 1: the paper's copies sweep"),
        note="sercore adds the copies to Train rows only: the code's dev files were training files (see "
             "train.dev_split), sercore's Development split selects the model, and a warped copy of a "
             "selection utterance in training would leak it. CPU profiles make no copies.",
        profiles={"smoke": 0, "default": 0}),
    Deviation(
        "area-cnn", "train.vtlp_warp",
        paper="VTLP (Jaitly & Hinton 2013), warp factor in [0.8, 1.2], via nlpaug's VtlpAug",
        code="nlpaug nlpaug/model/audio/vtlp.py (VtlpAug(16000, zone=(0, 1), coverage=1, fhi=4800, "
             "factor=(0.8, 1.2)) in vtlpAug.py): get_scale_factors spreads the bins over 0..sr, not 0..Nyquist, "
             "and rescales the largest warped value to the top bin, so the real low-frequency factor is "
             "0.70..1.33 with the kink near 2.0..2.4 kHz; librosa STFT n_fft 2048 / hop 512, first and last "
             "bins left in place, complex values moved with no phase correction, istft without a length "
             "(the wave is cut to a multiple of 512 samples)",
        default="nlpaug",
        alternatives=("textbook: Jaitly & Hinton's map over 0..Nyquist (factor 0.8..1.2, kink 4..4.8 kHz) on the "
                      "log-Mel's own power spectrum",),
        note="sercore.features.vtlp warp='nlpaug' reproduces nlpaug's formulas; the copy's log-Mel is computed "
             "from the warped wave, as the code read the warped wav files back."),
    Deviation(
        "area-cnn", "train.short_segments",
        paper="2 s segments; utterances shorter than a segment are not used",
        code=f"{_AREA_CODE} area_train.py train_data_process / valid_data_process: an utterance with "
             "t * RATE >= len(wav) (at most 2 s) is skipped, in training and test alike",
        default="skip",
        alternatives=("pad: keep an utterance of exactly one segment and repetition-pad shorter ones",),
        note="sercore counts frames (hop 25 ms), so 'skip' drops utterances of at most 81 frames: besides those "
             "of at most 2 s it also drops those of 2 s + 1..399 samples, which the code kept with one window. "
             "Likewise the code's windows need index + 2 s < len(wav), so it drops a last window that ends "
             "exactly on the last sample; sercore keeps every window that fits in the frames."),
    Deviation(
        "area-cnn", "train.dev_split",
        paper="random 70/10/20 train/dev/test split of improvised IEMOCAP",
        code=f"{_AREA_CODE} area_train.py trains on the train AND dev lists (with their VTLP copies), checks "
             "the test list after every epoch, saves the model at the best test WA + UA, and reports the best "
             "test WA and the best test UA over the 100 epochs, each maximised on its own",
        default="Development",
        alternatives=("Test: select on the test split as the code did (IEMOCAP layout; "
                      "--set dev_split=Test), which makes the reported score optimistic",),
        note="Not the code on purpose: selecting on the test set reports a maximum over 100 looks at it. "
             "Training on the dev files too is not offered."),
    Deviation(
        "area-cnn", "code.sercore.data.iemocap:load_iemocap.happy",
        paper="IEMOCAP improvised, 4 classes",
        code=f"{_AREA_CODE} area_train.py LABEL_DICT1: neutral, sad, angry and excited as 'happy' (happy "
             "itself left out); impro_or_script = 'impro'; a random utterance split (process_dataset.py), so "
             "speakers are shared between train and test",
        default="hap+exc",
        alternatives=("exc: the code's 'happy' (corpus.happy=exc, with corpus.improvised_only=true)",),
        note="The corpus loader is shared by every study, so its default is the common 4-class set; the area "
             "code's subset is two corpus options away. sercore's folds are leave-one-session-out (speaker "
             "independent); the code's random utterance split is not offered."),
    Deviation(
        "area-cnn", _AREA + ".max_width",
        paper="3 x 3 areas, the paper's pick with VTLP (4 x 4 without)",
        code=f"{_AREA_CODE} area_train.py as committed sets area_height = area_width = 1 (while its log file "
             "is named area3x3_AUG2); model.py AACNN defaults to height = width = 3",
        default=3,
        note="The committed script's 1 x 1 is an edited global, not evidence of the headline run; the paper "
             "profile spells out area_options {max_height: 3, max_width: 3}."),
    Deviation(
        "area-cnn", _AREA + ".layout",
        paper="areas are rectangles of the 2-D feature map (up to max height x width)",
        code=f"{_AREA_CODE} model.py passes the channels-last map [B, H, W, C] to tensor2tensor's "
             "dot_product_area_attention, which reads [batch, heads, length, depth]: each frequency row is a "
             "head and areas are 1-D runs over time; max_area_height has no effect",
        default="freq-heads-1d", alternatives=("2d: the paper's description, every cell over all rectangles",)),
    Deviation(
        "area-cnn", _AREA + ".dropout_at_test",
        paper="dropout on the attention weights (a training regulariser)",
        code=f"{_AREA_CODE} model.py calls dot_product_area_attention with dropout_rate 0.5 and training=True "
             "always, so the area weights are dropped at test time too",
        default=True, alternatives=("False: dropout in training only",)),
    Deviation(
        "area-cnn", _AREA + ".key",
        paper="area features swept: max, mean, sample",
        code=f"{_AREA_CODE} model.py: area_key_mode='mean' (the run behind the headline)",
        default="mean", alternatives=("max", "sample: mean + std x N(0, 1), noise on at test with dropout_at_test")),
    Deviation(
        "area-cnn", _AREA + ".value",
        paper="an area's value is the sum of its cells",
        code=f"{_AREA_CODE} model.py: area_value_mode='sum'",
        default="sum", alternatives=("mean", "max")),
    Deviation(
        "area-cnn", _AREA + ".scaled",
        paper="dot-product attention over areas; no scale is given",
        code="tensor2tensor dot_product_area_attention as the code calls it: logits q . k, not divided by "
             "sqrt(depth) (area_temperature 1)",
        default=False, alternatives=("True: divide the logits by sqrt(channels / heads)",)),
    Deviation(
        "area-cnn", "none",
        paper="log-Mel of each 2 s segment (128 mels, n_fft 800, hop 400)",
        code=f"{_AREA_CODE} features.py computes librosa's melspectrogram on each 2 s piece of wave on its own "
             "(centred frames, so each segment's edge frames see padding) and takes log10 with no floor",
        default="log-Mel of the whole utterance, then 81-frame windows of it; log10 of max(power, 1e-10)",
        note="Computing the features once per utterance lets the cache serve every window and hop; the two "
             "differ only in a segment's first and last frames. The floor keeps digital silence finite "
             "(the code's log10(0) is -inf)."),
    Deviation(
        "area-cnn", "none",
        paper="Adam, learning rate 1e-4",
        code=f"{_AREA_CODE} area_train.py: tf.keras Adam(learning_rate=1e-4, decay=1e-6), Keras' time-based "
             "decay lr / (1 + 1e-6 x step)",
        default="Adam 1e-4, constant (train.by_study.area-cnn.schedule: constant)",
        note="The decay is small (after 10 000 steps the rate is 1 % lower); no setting reproduces it."),
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
