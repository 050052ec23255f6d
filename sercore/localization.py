"""Where a trained model attends, checked against where the emotion is (the `localized` generated corpus).

    att = localization.attention_over_time(model, batch)        # per-frame weights of a trained model
    localization.localization_score(att.frames(0, "pooling"), att.frame_rate, (1.2, 2.7), 4.4)
    localization.score_run("runs/default/keysparse/keep 0.3-seed0", corpus)   # a run's Test1 utterances
    localization.localization_summary(runs, corpus, parameter="keep_rate")    # over seeds, with intervals
    plots.attention_heatmaps(localization.heatmap_items(run_dir, corpus, n=3))  # spectrogram, attention, mask
    localization.findings(curve, scores)   # what the intervals support, in sentences

attention_over_time reads, by forward hooks on the model's own modules (the forward pass and its numbers
are unchanged), for every speech frame:
  * "pooling": the attention-pooling weights (sercore.models.pooling.AttentionPooling), where the model
    has one (the fusion model);
  * one entry per attention layer whose keys are speech frames: the column sums of the per-head
    equivalent matrix's magnitudes (SequenceMixer.attention_matrix, |A| [B, H, T, S] -> [B, H, S] summed over
    the queries): how much each frame is attended to. The absolute value changes nothing where A >= 0
    (softmax, key-sparse) and makes a share of mass of the linear mechanisms' signed matrices (RetNet's
    q.k carries a sign), whose plain column sums can cancel or go negative. For a causal mechanism the early frames are attended by more
    queries, so its column sums lean towards the start whatever the content: read them with that in mind;
  * for key-sparse layers, the kept-key mask ([B, H, S], KeySparseAttention.kept_keys).
The fusion model's sequence is the speech frames followed by the text tokens; only the speech columns are
kept (the text's share of the mass is left out, and scores renormalise over the speech frames). The
ks-transformer's speech stream is its fixed input (the first max_frames frames); the cross-attention of
the text queries onto the audio keys counts as a layer over the speech frames too.

localization_score is the key-sparse paper's claim in a measurable form ("focusing on emotion-related
information", Chen et al., ICASSP 2022): the share of the attention mass on the frames inside the
emotional segment, divided by the share of the frames that lie inside it. 1 = no preference (uniform
weights score exactly 1), above 1 = more attention on the segment than its length gives it. Frames are
counted, not seconds, so the score needs no assumption about how a frame covers time: frame t stands at
t / frame_rate seconds, and the frames of the utterance are those before `duration`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from pathlib import Path

import numpy as np
import torch

from sercore.attention.base import SequenceMixer
from sercore.attention.keysparse import KeySparseAttention
from sercore.models.pooling import AttentionPooling

if TYPE_CHECKING:
    import pandas as pd


@dataclass
class AttentionOverTime:
    """Per-frame attention of one batch. mask [B, T] marks the real speech frames; pooling [B, T] or None;
    layers name -> [B, H, T] column sums of |A|; kept name -> [B, H, T] bool (key-sparse layers only)."""

    frame_rate: float
    mask: np.ndarray
    pooling: np.ndarray | None = None
    layers: dict = field(default_factory=dict)
    kept: dict = field(default_factory=dict)

    def frames(self, i: int, which: str, head: str = "mean") -> np.ndarray:
        """Sample i's weights over its real frames: "pooling", a layer name (heads averaged, or
        head=<index>), or "kept:<layer>" (the share of heads that keep each frame)."""
        n = int(self.mask[i].sum())
        if which == "pooling":
            if self.pooling is None:
                raise ValueError("this model has no attention pooling; choose one of: " + ", ".join(self.layers))
            return self.pooling[i, :n]
        source = self.kept if which.startswith("kept:") else self.layers
        name = which.split(":", 1)[1] if which.startswith("kept:") else which
        if name not in source:
            raise ValueError(f"no attention {which!r}; available: {', '.join(self.names())}")
        values = source[name][i, :, :n].astype(np.float64)
        return values.mean(0) if head == "mean" else values[int(head)]

    def names(self) -> list[str]:
        return (["pooling"] if self.pooling is not None else []) + list(self.layers) + \
            [f"kept:{name}" for name in self.kept]


def _speech_mixers(model) -> list[tuple[str, torch.nn.Module]]:
    """(name, mixer) of every attention layer whose keys are speech frames, input side first."""
    from sercore.models.fusion import FusionModel
    from sercore.models.ks_transformer import KSTransformer

    if isinstance(model, FusionModel):
        return [(f"block{i}", block.mixer) for i, block in enumerate(model.blocks)]
    if isinstance(model, KSTransformer):
        found = [(f"encoder{i}", layer.mixer) for i, layer in enumerate(model.audio_encoder.layers)]
        for i, ccab in enumerate(model.audio_from_text):
            found += [(f"ccab{i}.self{j}", layer.mixer) for j, layer in enumerate(ccab.self_attention.layers)]
        for i, ccab in enumerate(model.text_from_audio):  # text queries onto the audio keys
            found += [(f"ccab{i}.text_from_audio{j}", layer.mixer) for j, layer in enumerate(ccab.cross.layers)]
        found += [(f"final{i}", layer.mixer) for i, layer in enumerate(model.audio_final.layers)]
        return found
    raise TypeError(f"attention_over_time: {type(model).__name__} is not supported (fusion, ks-transformer)")


def _speech_mask(model, batch: dict) -> torch.Tensor:
    """The real speech frames as the model sees them: the ks-transformer's fixed-length input, else the
    batch's speech mask."""
    from sercore.models.batch import mask_for
    from sercore.models.ks_transformer import KSTransformer, fixed_length

    speech = batch["speech"]
    mask = mask_for(batch, "speech", speech)
    if isinstance(model, KSTransformer):
        mask = fixed_length(speech[..., :1] if speech.dim() == 3 else speech[:, 0, :, :1], mask,
                            model.max_frames)[1]
    return mask


@torch.no_grad()
def attention_over_time(model, batch: dict, frame_rate: float = float("nan")) -> AttentionOverTime:
    """Run `model` (put in eval mode: no dropout) on `batch` and return the attention over its speech frames.

    batch: a trainer batch (speech [B, T, F] and its speech_mask, text and text_mask when the model reads
    text), e.g. from attention_batch; frame_rate (frames per second) is recorded for the scores. The hooks
    only read the mixers' inputs; the matrices are computed from them afterwards (materialised: meant for
    utterances of seconds, not minutes)."""
    model.eval()
    mixers = _speech_mixers(model)
    calls: dict[str, tuple] = {}
    pooled: list = []
    handles = []
    for name, mixer in mixers:
        handles.append(mixer.register_forward_pre_hook(
            lambda module, args, kwargs, name=name: calls.__setitem__(name, (args, kwargs)), with_kwargs=True))
    pooling = getattr(model, "pooling", None)
    if isinstance(pooling, AttentionPooling):
        handles.append(pooling.register_forward_pre_hook(lambda module, args: pooled.append(args)))
    try:
        model(batch)
    finally:
        for handle in handles:
            handle.remove()
    mask = _speech_mask(model, batch).to(batch["speech"].device)
    t = mask.shape[1]
    result = AttentionOverTime(frame_rate=float(frame_rate), mask=mask.cpu().numpy())
    if pooled:
        x, pool_mask = pooled[0]
        result.pooling = (pooling.weights(x, pool_mask)[:, :t] * mask).cpu().numpy()
    for name, mixer in mixers:
        args, kwargs = calls[name]
        x, layer_mask = args[0], args[1] if len(args) > 1 else kwargs.get("mask")
        if isinstance(mixer, KeySparseAttention):
            inputs = dict(context=kwargs.get("context"), context_mask=kwargs.get("context_mask"))
            a = mixer.attention_matrix(x, layer_mask, **inputs)
            result.kept[name] = (mixer.kept_keys(x, layer_mask, **inputs)[..., :t] & mask[:, None]).cpu().numpy()
        elif isinstance(mixer, SequenceMixer):
            a = mixer.attention_matrix(x, layer_mask)
        else:
            raise TypeError(f"attention_over_time: layer {name} ({type(mixer).__name__}) has no attention_matrix")
        # keys of a self-attention layer over [speech ; text] (fusion): the first t columns are the speech;
        # |A|: a signed (linear) matrix's column sums are no mass (see the module docstring)
        result.layers[name] = (a.abs().sum(dim=2)[..., :t] * mask[:, None]).float().cpu().numpy()
    return result


def localization_score(weights, frame_rate: float, segment: tuple[float, float], duration: float) -> float:
    """(share of the mass of `weights` on the frames inside `segment`) / (share of the frames inside it).

    weights [T] >= 0 over the frames (frame t at t / frame_rate s); the utterance's frames are those
    before `duration` s (later ones, padding, are ignored); segment (start, end) in seconds. 1 = no
    preference; uniform weights give exactly 1. Raises ValueError when no frame lies in the segment or
    the weights have no mass."""
    w = np.asarray(weights, dtype=np.float64).ravel()
    if (w < 0).any() or not np.isfinite(w).all():
        raise ValueError("localization_score: weights must be finite and >= 0")
    times = np.arange(w.size) / float(frame_rate)
    real = times < duration
    inside = real & (times >= segment[0]) & (times < segment[1])
    if not inside.any():
        raise ValueError(f"localization_score: no frame of the {real.sum()} inside the segment {segment} "
                         f"(frame rate {frame_rate}/s, duration {duration} s)")
    mass = w[real].sum()
    if mass <= 0:
        raise ValueError("localization_score: the weights have no mass on the utterance's frames")
    return float((w[inside].sum() / mass) / (inside.sum() / real.sum()))


def bootstrap_mean(values, n_boot: int = 1000, seed: int = 0) -> tuple[float, float, float]:
    """(mean, 2.5 %, 97.5 %) of a percentile bootstrap over the values (utterances)."""
    values = np.asarray(values, dtype=np.float64)
    rng = np.random.default_rng(seed)
    boots = values[rng.integers(0, values.size, size=(n_boot, values.size))].mean(axis=1)
    low, high = np.percentile(boots, [2.5, 97.5])
    return float(values.mean()), float(low), float(high)


def load_trained(run_dir, corpus, split: str = "Test1", cache_dir=None):
    """(model, data, rows, table) of a finished run: the model rebuilt from metrics.json with its best-dev
    weights (as `python -m sercore predict` does), the features of `split` from the run's cache."""
    from sercore.data import load_corpus
    from sercore.features.cache import cache_dir_or_default
    from sercore.predict import CHECKPOINT, _run_record
    from sercore.profiles import section
    from sercore.train import distributed
    from sercore.train.datasets import Utterances
    from sercore.train.run import model_spec, spec_features, spec_model
    from sercore.train.settings import TrainSettings

    run_dir = Path(run_dir)
    metrics = _run_record(run_dir)
    parameters = metrics["provenance"]["parameters"]
    settings = TrainSettings(**{**parameters["train"], "progress": False})
    table, _ = load_corpus(corpus, **(parameters.get("corpus_options") or {}))
    table = table[table["split"] == split].reset_index(drop=True)
    if table.empty:
        raise ValueError(f"{corpus}: no utterances in split {split!r}")
    features_cfg = dict(parameters["features"])
    spec = model_spec(parameters["study"], parameters.get("mechanism"), parameters["model"], features_cfg)
    cache = cache_dir_or_default(cache_dir, None if cache_dir else
                                 (section(parameters["profile"], "features") or {}).get("cache_dir"))
    table, speech, text, _ = spec_features(spec, table, features_cfg, cache, {}, distributed.World(), False)
    data = Utterances.from_table(table, speech, text, frames_per_second=spec.fps, classes=metrics["classes"])
    model = spec_model(spec, data, settings)
    state = torch.load(run_dir / CHECKPOINT, map_location="cpu", weights_only=True)
    model.load_state_dict(state["model"])
    return model.eval(), data, np.arange(len(table)), table


def attention_batch(data, rows) -> dict:
    """A batch of whole utterances (rows of a train.datasets.Utterances), as the trainer evaluates them."""
    from sercore.train.datasets import pad_stack, targets, text_batch

    speech, mask = pad_stack([np.asarray(data.speech[r], dtype=np.float32) for r in rows])
    return {"speech": speech, "speech_mask": mask, **text_batch(data, rows), **targets(data, rows)}


def default_attention(model) -> str:
    """The attention a run is scored by: the pooling weights where the model has attention pooling (the
    fusion model), else the column sums of its last attention layer over the speech frames (the
    ks-transformer: its last key-sparse self-attention layer, just before the mean over time)."""
    if isinstance(getattr(model, "pooling", None), AttentionPooling):
        return "pooling"
    return _speech_mixers(model)[-1][0]


def default_reads(model) -> list[str]:
    """Every attention read a run is scored and drawn by (AttentionOverTime.names), the one list of them:
    default_attention first; then the column sums of the last mixer over the speech frames where that is
    not already it (the fusion model: what the token mixer attends to, beside what the pooling weighs); and
    the kept-key mask of that layer where it is key-sparse."""
    layer, mixer = _speech_mixers(model)[-1]
    reads = list(dict.fromkeys([default_attention(model), layer]))
    if isinstance(mixer, KeySparseAttention):
        reads.append(f"kept:{layer}")
    return reads


def score_run(run_dir, corpus, split: str = "Test1", which=None, batch_size: int = 16, n_boot: int = 1000,
              seed: int = 0, cache_dir=None) -> dict:
    """Score a finished run's `split` utterances against the corpus's segments.csv.

    which: names as in AttentionOverTime.names() (None: default_reads). Returns {"run", "split", "n", "scores": {name: {"mean", "ci95": [lo, hi]}},
    "per_utterance": DataFrame (utt_id, one column per name)}; the interval is a bootstrap over the
    utterances (seed, n_boot)."""
    import pandas as pd

    from sercore.data import load_segments

    model, data, rows, table = load_trained(run_dir, corpus, split, cache_dir)
    segments = load_segments(corpus).set_index("utt_id")
    missing = sorted(set(table["utt_id"]) - set(segments.index))
    if missing:
        raise ValueError(f"{Path(corpus) / 'segments.csv'}: no segment for {len(missing)} {split} utterance(s), "
                         f"e.g. {missing[0]}")
    which = default_reads(model) if which is None else list(which)
    records = []
    for start in range(0, len(rows), batch_size):
        chunk = rows[start:start + batch_size]
        att = attention_over_time(model, attention_batch(data, chunk), data.frames_per_second)
        for i, r in enumerate(chunk):
            seg = segments.loc[data.utt_id[r]]
            record = {"utt_id": data.utt_id[r]}
            for name in which:
                record[name] = localization_score(att.frames(i, name), data.frames_per_second,
                                                  (seg.seg_start, seg.seg_end), seg.duration)
            records.append(record)
    per_utterance = pd.DataFrame(records)
    scores = {}
    for name in which:
        mean, low, high = bootstrap_mean(per_utterance[name], n_boot, seed)
        scores[name] = {"mean": mean, "ci95": [low, high]}
    return {"run": str(run_dir), "split": split, "n": len(per_utterance), "scores": scores,
            "per_utterance": per_utterance}



def localization_summary(runs: list[dict], corpus, split: str = "Test1", n_boot: int = 1000, seed: int = 0,
                         parameter: str | None = None, which=None) -> "pd.DataFrame":
    """One row per (variant, attention): the localization score over the variant's seeds, as
    results.seed_summary reports a metric: mean of the seed means, sd (ddof 1), min and max across seeds,
    and a 95 % percentile-bootstrap interval of the seed mean, resampling utterances (the same draw for every
    seed). runs: as results.run_grid returns them; parameter: a model option to add as a column (e.g.
    "keep_rate"); which: the attention reads (score_run's; None: default_reads)."""
    import pandas as pd

    by_variant: dict = {}
    for run in runs:
        by_variant.setdefault(run.get("variant", run.get("mechanism")), []).append(run)
    rows = []
    for variant, members in by_variant.items():
        scored = [score_run(run["out_dir"], corpus, split, which=which, n_boot=n_boot, seed=seed) for run in members]
        tables = [s["per_utterance"].sort_values("utt_id").reset_index(drop=True) for s in scored]
        for name in scored[0]["scores"]:
            matrix = np.stack([t[name].to_numpy() for t in tables])  # seeds x utterances
            per_seed = matrix.mean(axis=1)
            _, low, high = bootstrap_mean(matrix.mean(axis=0), n_boot, seed)
            row = {"variant": variant, "attention": name, "split": split, "n_seeds": len(members),
                   "n": matrix.shape[1], "mean": float(per_seed.mean()),
                   "sd": float(per_seed.std(ddof=1)) if len(members) > 1 else np.nan,
                   "min": float(per_seed.min()), "max": float(per_seed.max()), "ci95_low": low, "ci95_high": high}
            if parameter is not None:
                row[parameter] = members[0]["provenance"]["parameters"]["model"].get(parameter)
            rows.append(row)
    return pd.DataFrame(rows)


def speech_values(parameters: dict) -> str:
    """What a run's speech features are (its provenance parameters): log-Mel is the log of mel power, natural
    or base 10 as the features' `log` says (sercore.features.log_mel); otherwise the encoder's hidden state."""
    speech = parameters["model"].get("speech", "logmel")
    if speech.startswith("logmel"):
        settings = parameters["features"].get("logmel_area" if speech == "logmel128-segments" else "logmel") or {}
        return f"{settings.get('log', 'ln')} mel power"
    return "SSL hidden state" if speech == "ssl" else f"{speech} features"


def heatmap_items(run_dir, corpus, utt_ids=None, n: int = 3, split: str = "Test1", which=None) -> list[dict]:
    """What plots.attention_heatmaps draws for a few `split` utterances of a finished run (the first `n`
    of the split in utt_id order unless utt_ids is given): per utterance its log-Mel spectrogram, segment,
    duration, label, the model's prediction, and "reads": one entry per attention read over its frames
    (`which`: names as in AttentionOverTime.names(), None: default_reads), each {"name", "weights" [T]
    (heads averaged), "heads" [H, T] (per head; None for the pooling weights), "score"}; and "kept", the
    kept-key mask (heads x frames) where a read is a key-sparse layer's; "values" names what the speech
    features are (speech_values), for the spectrogram's colour bar."""
    from sercore.data import load_segments
    from sercore.predict import _run_record

    model, data, rows, _ = load_trained(run_dir, corpus, split)
    values = speech_values(_run_record(Path(run_dir))["provenance"]["parameters"])
    segments = load_segments(corpus).set_index("utt_id")
    wanted = sorted(data.utt_id[rows])[:n] if utt_ids is None else list(utt_ids)
    position = {u: i for i, u in enumerate(data.utt_id)}
    missing = [u for u in wanted if u not in position]
    if missing:
        raise ValueError(f"{corpus}: {split} has no utterance {missing[0]}")
    chosen = [position[u] for u in wanted]
    batch = attention_batch(data, chosen)
    att = attention_over_time(model, batch, data.frames_per_second)
    with torch.no_grad():
        predicted = model(batch)["logits"].argmax(-1).tolist()
    names = default_reads(model) if which is None else ([which] if isinstance(which, str) else list(which))
    items = []
    for i, r in enumerate(chosen):
        seg = segments.loc[data.utt_id[r]]
        n_frames = int(att.mask[i].sum())
        segment = (float(seg.seg_start), float(seg.seg_end))
        item = {"utt_id": data.utt_id[r], "label": data.label_name[r], "predicted": data.classes[predicted[i]],
                "spectrogram": np.asarray(data.speech[r], dtype=np.float32), "frame_rate": data.frames_per_second,
                "segment": segment, "duration": float(seg.duration), "values": values, "reads": []}
        for name in names:
            if name.startswith("kept:"):  # a mask, drawn as heads x frames, not a weight curve
                item["kept"] = att.kept[name.split(":", 1)[1]][i, :, :n_frames]
                continue
            weights = att.frames(i, name)
            heads = None if name == "pooling" else att.layers[name][i, :, :n_frames].astype(np.float64)
            item["reads"].append({"name": name, "weights": weights, "heads": heads,
                                  "score": localization_score(weights, data.frames_per_second, segment,
                                                              seg.duration)})
        items.append(item)
    return items


def _interval(row) -> str:
    return f"{row['mean']:.3f} [{row['ci95_low']:.3f}, {row['ci95_high']:.3f}] ({int(row['n_seeds'])} seed(s))"


def _separated(a, b) -> bool:
    """Both with >= 3 seeds and non-overlapping intervals: the book's rule for ranking two variants."""
    return min(a["n_seeds"], b["n_seeds"]) >= 3 and (a["ci95_low"] > b["ci95_high"] or b["ci95_low"] > a["ci95_high"])


def _seeds_note(row) -> str:
    """Why a highest mean is not a ranking when it has fewer than 3 seeds (empty otherwise)."""
    seeds = int(row["n_seeds"])
    return "" if seeds >= 3 else f" ({'a single' if seeds == 1 else 'a few'}-seed observation, not a ranking)"


def _versus(x, a_x, a, b_x, b, what: str) -> str:
    """The book's reading of two rows (mean, interval, n_seeds): which is higher, or why neither is."""
    if _separated(a, b):
        high, low = (a_x, b_x) if a["mean"] > b["mean"] else (b_x, a_x)
        return f"{what}: {x} {high} is higher than {x} {low}: {_interval(a)} against {_interval(b)}, intervals apart."
    why = ("fewer than 3 seeds" if min(a["n_seeds"], b["n_seeds"]) < 3 else "the intervals overlap")
    return (f"{what}: {x} {a_x} {_interval(a)} and {x} {b_x} {_interval(b)} are not distinguishable ({why}), "
            "so this pair is not ranked.")


def findings(curve, scores=None, chance: float | None = None, split: str = "Test1", x: str = "keep_rate",
             dense: float = 1.0) -> list[str]:
    """Sentences that say what a sweep's numbers support, derived from them (nothing is claimed that the
    intervals do not carry: two settings are ranked only with >= 3 seeds each and 95 % intervals apart, and
    a highest mean on fewer seeds says it is an observation). curve: results.sweep_summary frame (or a
    seed_summary frame with x="variant"); scores: localization_summary frame (with the x column); dense: the
    x value that keeps every key (or the reference variant, e.g. "softmax"), the one a setting is ranked
    against."""
    part = curve[curve["split"] == split].set_index(x)
    best_x = part["mean"].idxmax()
    best_x = best_x.item() if hasattr(best_x, "item") else best_x
    best = part.loc[best_x]
    tied = [v.item() if hasattr(v, "item") else v for v in part.index
            if v != best_x and f"{part.loc[v, 'mean']:.3f}" == f"{best['mean']:.3f}"]
    tie = f", tied with {x} {tied} at this precision" if tied else ""
    out = [f"Highest {split} mean: {x} {best_x}, {_interval(best)}{tie}{_seeds_note(best)}."]
    if chance is not None:
        above = best["ci95_low"] > 2 * chance
        out.append(f"Its interval {'lies above' if above else 'does not lie above'} twice chance ({2 * chance:.3f}).")
    if dense in part.index and best_x != dense:
        out.append(_versus(x, best_x, best, dense, part.loc[dense], f"{split} accuracy against {x} {dense}"))
    elif len(part) > 1:  # the reference is the highest: is it above the runner-up?
        second = part.drop(index=best_x)["mean"].idxmax()
        second = second.item() if hasattr(second, "item") else second
        out.append(_versus(x, best_x, best, second, part.loc[second], f"{split} accuracy, highest against next"))
    if scores is not None and len(scores):
        for name, rows in scores.groupby("attention", sort=False):
            values = rows[x].tolist()  # plain Python values: they are printed
            above = [v for v, low in zip(values, rows["ci95_low"]) if low > 1]
            below = [v for v, high in zip(values, rows["ci95_high"]) if high < 1]
            neither = [v for v in values if v not in above and v not in below]
            seeds = sorted({int(n) for n in rows["n_seeds"]}) if "n_seeds" in rows else []
            out.append(f"Localization ({name}{', ' + '/'.join(map(str, seeds)) + ' seed(s)' if seeds else ''}): "
                       f"interval above 1 (more attention on the emotional phrase than its length gives it) at {x} "
                       f"{above or 'none'}; below 1 at {below or 'none'}; including 1 at {neither or 'none'}.")
            indexed = rows.set_index(x)
            if "mean" in rows and dense in indexed.index and len(indexed) > 1:
                # the paper's claim is about sparsity: the sparsest setting (or each variant) against the dense one
                others = [v for v in values if v != dense]
                for other in ([min(others)] if isinstance(dense, (int, float)) else others):
                    out.append(_versus(x, other, indexed.loc[other], dense, indexed.loc[dense],
                                       f"Localization ({name})"))
    return out
