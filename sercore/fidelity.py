"""One registry of every place where a paper's text, its public code and sercore differ.

Rule: where the paper text and its public code disagree, sercore has a named setting whose default is what
the public code did; the other reading (or a cheaper choice for a CPU profile) is a named alternative. Each
entry says where its default lives, so tests/test_fidelity_registry.py holds the library to this list, and the
book's Fidelity page (notebooks/fidelity.ipynb) renders it with `markdown()`.

`setting` says where the value lives:
  "model.<study>.<option>"            a build_model(study) option: its default (sercore.models.model_options)
  "train.<key>"                       a TrainSettings default
  "train.by_study.<study>.<key>"      the `paper` profile's train.by_study entry for that study
  "features.<key>[.<key>]"            the `paper` profile's features section
  "bench.<key>"                       the `paper` profile's bench section (else sercore.bench.benchmark's default)
  "attention.<mechanism>.<option>"    a sercore.attention mechanism's constructor default (build(name, ...))
  "code.<module>:<name>[.<param>]"    a module constant, or the default of keyword `param` of callable `name`
  "none"                              no setting: sercore always does `default`; the other reading is not
                                      offered (the entry's `note` says why)
`default` is the value the code-faithful protocol uses there (under the `paper` profile: a profile value that
is set must equal it). `profiles` lists where a CPU profile runs something else on purpose, e.g.
{"default": "cheaper value"}. `value_in(entry, profile)` reads what a profile really runs; `check(entry)`
lists every way an entry and the library disagree.
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
        default=4, profiles={"smoke": 1, "default": 1},
        note="heads.FusionClassifier is that layout (head_width 512, head_blocks 4, head_dropout 0.1). An earlier "
             "layout without the Linear layers inside the blocks came from a misreading, not from the paper or "
             "the code, and was removed rather than kept as a setting. The CPU profiles keep one block: with "
             "four, the smoke run (240 steps) did not learn (Development / Test1 macro-F1 0.208 / 0.097 against "
             "0.453 / 0.447 with one block; chance 0.125)."),
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
        note="Applies to features.ssl.mode=cached: the utterance is encoded once (in 30 s chunks) and its hidden "
             "states cached, then 5.5 s of frames are cropped. null (default, smoke): the whole utterance in one "
             "pass. Online mode encodes the crop itself and does not chunk.",
        profiles={"default": None, "smoke": None}),
    Deviation(
        study="fusion", setting="features.ssl.mode",
        paper="a frozen SSL encoder on 5.5 s training crops",
        code="scripts/model.py, scripts/speech_feature_extractor.py: the SSL model runs inside the training step "
             "on each random waveform crop (scripts/data.py: repeat a short wave, then a uniform start), so it "
             "sees only the crop",
        default=None, alternatives=("online", "cached"),
        note="online is the code's protocol (sercore.train.online); cached encodes every utterance once, whole, "
             "and crops frames of the stored states, which approximates it: a cached crop's frames saw the "
             "utterance around the crop, so frames near a crop's edges differ. null: online on CUDA, cached "
             "elsewhere (on a CPU every step would pay the SSL forward pass); metrics.json data.ssl_mode says "
             "which ran."),
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
        study="fusion", setting="train.by_study.fusion.batch_size",
        paper="batch size 32",
        code="shs/mn5/attention_experiments/*.sh run scripts/train.py under torchrun with 4 processes and "
             "--training_batch_size 32; each process has its own DataLoader(shuffle=True) over the whole train "
             "set (no DistributedSampler) and the model is wrapped in DDP, so one optimizer step averages "
             "4 x 32 = 128 crops",
        default=128, alternatives=(32,), profiles={"smoke": 16, "default": 16},
        note="The code's crops per optimizer step (sercore's batch_size is the global batch, split across "
             "processes under torchrun); 32 is the paper text's per-process figure. The code's duplicated "
             "sampling (each process drawing from the whole set) is not reproduced."),
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
             "padded_queries_vote=False). sercore's generated `localized` corpus is made to fit this input: its "
             "files are 4.2-4.55 s (sercore.data.synth.LOCALIZED_SECONDS), so the first 4.6 s hold every "
             "emotional phrase."),
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
        "ks-transformer", "model.ks-transformer.classifier",
        paper="a classifier on the concatenated mean-pooled audio and text vectors",
        code=f"nn.Sequential(Linear(D, D/2), ReLU, Dropout(0.5), Linear(D/2, D/4), ReLU, Dropout(0.5), "
             f"Linear(D/4, 4)) with PyTorch's default initialisation ({_KS_CODE} model/KS_transformer_model.py)",
        default="code", alternatives=("linear",), profiles={"smoke": "linear", "default": "linear"},
        note="linear: Dropout(classifier_dropout) then one Linear(D, n_classes). The CPU profiles use it: with the "
             "code's MLP head the default-profile model (D = 128) stayed at ln 8 for 300 steps on the generated "
             "localized corpus (Test1 UA 0.131 [0.098, 0.167]; also without any dropout, with warmup, and with "
             "lr 3e-4), while a linear probe on mean-pooled log-Mel and text features reaches Test1 UA 0.61 on the "
             "same data; with the linear head the same run (keep_rate 0.3, seed 0, 300 steps) reaches Test1 UA 0.486 "
             "[0.426, 0.541]. The code trains 120 epochs, long enough to leave the MLP's slow start."),
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
_AREA_CODE = "lessonxmk/Optimized_attention_for_SER"
_AREA = "code.sercore.attention.area:AreaAttention"
AREA: list[Deviation] = [
    Deviation(
        "area-cnn", "train.by_study.area-cnn.epochs",
        paper="3 x 3 areas with VTLP for the headline; sercore takes the epoch count from the code",
        code=f"{_AREA_CODE} area_train.py: Epochs = 100 (Adam 1e-4, batch 32)",
        default=100,
        note="The CPU profiles train far shorter: 2 epochs (default), 3 (smoke). An epoch count, never a step "
             "cap, so runs with k VTLP copies (k + 1 times the steps per epoch) see each segment as often.",
        profiles={"smoke": 3, "default": 2}),
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
             "code's subset is two corpus options away. sercore's folds hold one session out as Test (its speakers "
             "unseen); Development follows corpus.dev (default a random 20 % of the four other sessions, as "
             "s3prl, so it shares speakers with Train). The code's random utterance split is not offered."),
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
_RELEASED = "the released model audeering/wav2vec2-large-robust-12-ft-emotion-msp-dim (its model card's EmotionModel)"
DIMENSIONAL: list[Deviation] = [
    Deviation(
        "dimensional", "none",
        paper="wav2vec2-large-robust with its transformer layers fine-tuned; the paper credits the valence CCC "
              ".638 on MSP-Podcast (v1.7) to what fine-tuning learns",
        code=f"{_RELEASED}: the fine-tuned encoder and its head",
        default="frozen features + a trained head (a probe)",
        note="sercore caches frozen SSL features and trains only the head, so its CCC measures what the frozen "
             "layers already encode; it does not reproduce .638 under any profile. Fine-tuning the encoder is not "
             "offered."),
    Deviation(
        "dimensional", "model.dimensional.pooling",
        paper="mean over time of the last transformer layer",
        code=f"{_RELEASED}: torch.mean over every frame, padding included (the head takes no mask)",
        default="masked-mean", alternatives=("unmasked-mean: the released head's mean, padding included",),
        note="Not the code's behaviour on purpose: for one unpadded utterance the two are equal; in a padded "
             "batch the released mean depends on the batch-mates' lengths, which is a bug, not a protocol."),
    Deviation(
        "dimensional", "model.dimensional.speech",
        paper="wav2vec2-large-robust, pruned to its first 12 transformer layers",
        code=f"{_RELEASED}: 12 layers, last hidden state, 1024-d",
        default="ssl", alternatives=("logmel: 80 log-Mel bands, when no local SSL model is at hand",),
        note="No speech SSL model ships offline, so the CPU profiles run log-Mel features.",
        profiles={"smoke": "logmel", "default": "logmel"}),
]

# The main paper's efficiency protocol (latency and memory of the seq2seq call). The public repository
# (marccasals98/AttentionAlternatives) holds the model, not the benchmark script: "code" says what its
# scripts/model.py call looks like.
EFFICIENCY: list[Deviation] = [
    Deviation(
        "efficiency", "bench.text_tokens",
        paper="length given as audio seconds at 50 frames/s (10 s = 500 frames)",
        code="scripts/model.py: seq_to_seq_layer(speech, text), so the layer sees the speech frames followed by "
             "the transcript's text tokens (scripts/poolings.py concatenates them along time)",
        default=None,
        alternatives=("null: the median token count of the corpus's transcripts (sercore.bench.median_text_tokens), "
                      "or DEFAULT_TEXT_TOKENS = 32 when no corpus is given", "0: speech frames only",
                      "N: a fixed count"),
        note="The sequence timed is speech frames + text tokens; the table keeps both columns."),
    Deviation(
        "efficiency", "bench.mask",
        paper="only the seq2seq call is measured (no mask is mentioned)",
        code="scripts/poolings.py: the RetNet, FoX, KDA and LightNet wrappers call fla's layer without a mask; "
             "the GSA wrapper passes an all-ones attention_mask, which sends fla's layer through its un-padding path",
        default="none",
        alternatives=("model: each layer called as the public wrapper calls it (all-ones mask for GSA only)",),
        note="The default follows the efficiency protocol (fla layers without a mask); whether the paper's timing "
             "went through the GSA wrapper is not public, so `model` is kept to measure that reading."),
    Deviation(
        "efficiency", "code.sercore.bench:DEFAULT_TEXT_TOKENS",
        paper="(not stated)", code="(no benchmark script is public)", default=32,
        note="This library's stand-in text length when no corpus is given, not a number measured on MSP-Podcast."),
    Deviation(
        "efficiency", "none",
        paper="the fla layer classes (fla.layers.*) timed on an H100",
        code="scripts/poolings.py wraps fla's layers (RetNet, GSA, FoX, KDA, LightNet) around the fused kernels",
        default="on CUDA: fla's own layer with sercore's weights copied in, and sercore's module as a second row; "
                "on the CPU: sercore's PyTorch reference only",
        note="fla needs triton and a GPU. The `implementation` column names what each row timed; CPU rows rank "
             "the reference implementations, not the kernels the paper timed."),
    Deviation(
        "efficiency", "bench.protocol",
        paper="fp32; softmax attention as a plain batched matmul (the [B*H, T, T] weights materialised)",
        code="scripts/poolings.py MultiHeadStandardVersion: q, k scaled, torch.bmm, softmax, torch.bmm",
        default="paper", alternatives=("tuned: bf16 and torch SDPA softmax (a fused kernel)",)),
    Deviation(
        "efficiency", "bench.dim",
        paper="width 1024, 4 heads, batch 1", code="scripts/model.py: the SSL and BERT-large width, 1024",
        default=1024, note="The CPU profiles time narrower layers so the page builds in minutes.",
        profiles={"smoke": 64, "default": 256}),
    Deviation(
        "efficiency", "bench.seconds",
        paper="10 to 400 s of audio", code="(no benchmark script is public)",
        default=[10, 50, 100, 200, 400],
        note="The default CPU profile sweeps 2 to 400 s but stops each mechanism at the first length whose median "
             "passes bench.time_cap_ms (500 ms); the GPU check (sercore.gpucheck) times 10, 25, 50, 100, 200 and "
             "400 s.",
        profiles={"smoke": [1, 2], "default": [2, 5, 10, 25, 50, 100, 200, 400]}),
    Deviation(
        "efficiency", "bench.repeats",
        paper="one warm-up call, then timed with CUDA events (how many timed calls is not stated)",
        code="(no benchmark script is public)", default=20,
        note="sercore reports the median of `repeats` timed calls, with the 20-80 % band, after `warmup` untimed "
             "calls at each shape (fla's kernels autotune on a new shape's first call), as fla's own benchmarks "
             "do; the GPU check warms 3 and times 20.",
        profiles={"smoke": 2, "default": 7}),
]

DEVIATIONS: list[Deviation] = FUSION + KEYSPARSE + AREA + MULTITASK + DIMENSIONAL + EFFICIENCY

PROFILE_NAMES = ("smoke", "default", "paper")
MISSING = object()  # a profile that does not set the value and no library default behind it


def _plain(value):
    """YAML and Python spellings of one value made comparable: tuples as lists, ints of floats as floats."""
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def same(a, b) -> bool:
    return _plain(a) == _plain(b)


def _nested(mapping, keys):
    for key in keys:
        if not isinstance(mapping, dict) or key not in mapping:
            return MISSING
        mapping = mapping[key]
    return mapping


def _code_value(path: str):
    """`module:name` -> the constant; `module:name.param` -> the default of keyword `param` of callable `name`."""
    import importlib
    import inspect

    module, _, rest = path.partition(":")
    name, _, param = rest.partition(".")
    value = getattr(importlib.import_module(module), name)
    if not param:
        return value
    parameters = inspect.signature(value).parameters
    if param not in parameters or parameters[param].default is inspect.Parameter.empty:
        raise KeyError(f"{path}: {name} has no parameter {param!r} with a default")
    return parameters[param].default


def library_default(entry: Deviation):
    """The value sercore's code uses when no profile says otherwise, or MISSING where only a profile sets it."""
    kind, _, rest = entry.setting.partition(".")
    if kind == "model":
        from sercore.models import model_options

        study, _, option = rest.partition(".")
        options = model_options(study)
        if option not in options:
            raise KeyError(f"{entry.setting}: build_model({study!r}) has no option {option!r}")
        return options[option]
    if kind == "train" and not rest.startswith("by_study."):
        from sercore.train.settings import TrainSettings

        fields = TrainSettings.__dataclass_fields__
        if rest not in fields:
            raise KeyError(f"{entry.setting}: TrainSettings has no key {rest!r}")
        return fields[rest].default
    if kind == "bench":
        import inspect

        from sercore.bench import benchmark

        parameter = inspect.signature(benchmark).parameters.get(rest)
        return MISSING if parameter is None else parameter.default
    if kind == "code":
        return _code_value(rest)
    if kind == "attention":
        import inspect

        from sercore.attention import mechanism_class

        name, _, option = rest.partition(".")
        parameter = inspect.signature(mechanism_class(name).__init__).parameters.get(option)
        if parameter is None or parameter.default is inspect.Parameter.empty:
            raise KeyError(f"{entry.setting}: mechanism {name!r} has no option {option!r} with a default")
        return parameter.default
    if entry.setting == "none":
        return entry.default
    if kind in ("train", "features"):
        return MISSING
    raise KeyError(f"{entry.setting}: unknown kind of setting {kind!r} (see the sercore.fidelity docstring)")


def value_in(entry: Deviation, profile: str):
    """What `profile` runs for this entry: the profile's value where it sets one, else the library default."""
    from sercore.profiles import load_profile

    kind, _, rest = entry.setting.partition(".")
    data = load_profile(profile)
    if kind == "train":
        from sercore.train.settings import resolve

        key = rest.rpartition(".")[2]
        study = rest.split(".")[1] if rest.startswith("by_study.") else entry.study
        return getattr(resolve(profile, study), key)
    if kind == "model":
        study, _, option = rest.partition(".")
        value = _nested(data, ["model", study, option])
    elif kind in ("features", "bench"):
        value = _nested(data, [kind, *rest.split(".")])
    else:  # mechanism defaults, code constants and "none" are the same under every profile
        value = MISSING
    return library_default(entry) if value is MISSING else value


def check(entry: Deviation) -> list[str]:
    """Every way the library disagrees with this entry (empty when it holds): the library default, and what each
    profile runs against `profiles.get(profile, default)`; under `paper` a by_study / features value must be set."""
    from sercore.profiles import load_profile

    where = f"{entry.study}: {entry.setting}"
    problems = []
    if not (entry.paper and entry.code):
        problems.append(f"{where}: says nothing of the paper or the public code")
    if entry.setting == "none" and not entry.note:
        problems.append(f"{where}: an entry with no setting must say why in its note")
    unknown = sorted(set(entry.profiles) - set(PROFILE_NAMES))
    if unknown:
        problems.append(f"{where}: unknown profile(s) {unknown}")
    try:
        default = library_default(entry)
        if default is not MISSING and not same(default, entry.default):
            problems.append(f"{where}: the library default is {default!r}, the registry says {entry.default!r}")
        if default is MISSING:  # only the paper profile holds the value: it must be spelled out there
            kind, _, rest = entry.setting.partition(".")
            if _nested(load_profile("paper"), [kind, *rest.split(".")]) is MISSING:
                problems.append(f"{where}: the paper profile does not set it")
        for profile in PROFILE_NAMES:
            runs, expected = value_in(entry, profile), entry.profiles.get(profile, entry.default)
            if not same(runs, expected):
                problems.append(f"{where}: profile {profile!r} runs {runs!r}, the registry says {expected!r}")
    except (KeyError, ValueError, ImportError, AttributeError, TypeError) as error:
        problems.append(f"{where}: {error}")
    return problems


def _show(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_show(item) for item in value) + "]"
    return str(value)


def table(deviations=None):
    """The registry as a pandas DataFrame: one row per entry, with what each profile runs."""
    import pandas as pd

    rows = []
    for entry in DEVIATIONS if deviations is None else deviations:
        runs = {profile: value_in(entry, profile) for profile in PROFILE_NAMES}
        rows.append({"study": entry.study, "setting": entry.setting, "paper": entry.paper, "public code": entry.code,
                     "sercore default": _show(entry.default), "alternatives": "; ".join(_show(a) for a in entry.alternatives),
                     "profiles run": ", ".join(f"{p}: {_show(v)}" for p, v in runs.items())
                     if entry.setting != "none" else "all: the default",
                     "note": entry.note})
    return pd.DataFrame(rows)


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ") or "-"


def markdown(deviations=None) -> str:
    """The registry as Markdown: a section per study, a table of setting / paper / public code / sercore default /
    alternatives / what each profile runs, and the notes below it."""
    frame = table(deviations)
    columns = ["setting", "paper", "public code", "sercore default", "alternatives", "profiles run"]
    out = []
    for study, rows in frame.groupby("study", sort=False):
        out += [f"## {study}", "", "| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
        out += ["| " + " | ".join(_cell(f"`{row[c]}`" if c == "setting" else row[c]) for c in columns) + " |"
                for _, row in rows.iterrows()]
        notes = [f"- `{row['setting']}`: {row['note']}" for _, row in rows.iterrows() if row["note"]]
        out += ["", *notes, ""]
    return "\n".join(out)
