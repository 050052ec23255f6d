"""Figures and audio of the data and mechanisms pages: colour bars and units (sercore.plots), embedded
listening samples (sercore.data.listening_samples)."""

import json

import matplotlib
import numpy as np
import pandas as pd
import soundfile as sf

matplotlib.use("Agg")

from sercore import plots  # noqa: E402
from sercore.data import listening_samples  # noqa: E402
from sercore.data.synth import GENERATOR  # noqa: E402


def test_attention_grid_has_a_colour_bar_and_token_axes_per_panel():
    rng = np.random.default_rng(0)
    matrices = {"signed": rng.normal(size=(2, 6, 6)), "positive": rng.random((2, 6, 6)), "third": rng.random((2, 6, 6))}
    fig = plots.attention_grid(matrices, ncols=2)
    colourbars = [ax for ax in fig.axes if ax.get_ylabel() == "A[t, s]"]
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert len(colourbars) == len(panels) == 3
    assert all(ax.get_xlabel() == "key position s (token)" and "(token)" in ax.get_ylabel() for ax in panels)
    signed = panels[0].images[0]
    assert signed.get_clim() == (-np.abs(matrices["signed"][0]).max(), np.abs(matrices["signed"][0]).max())
    assert panels[1].images[0].get_clim()[0] == 0


def test_confusion_has_a_recall_colour_bar():
    fig = plots.confusion([[3, 1], [0, 4]], ["A", "B"])
    assert any("recall" in ax.get_ylabel() for ax in fig.axes[1:])


def _corpus(tmp_path, generated):
    root = tmp_path / ("generated" if generated else "licensed")
    (root / "Audios").mkdir(parents=True)
    if generated:
        (root / "corpus.json").write_text(json.dumps({"generator": GENERATOR}))
    rows = []
    for i, (label, seconds) in enumerate([("A", 0.5), ("A", 0.6), ("A", 0.7), ("S", 0.5), ("S", 0.9)] * 2):
        path = root / "Audios" / f"u{i}.wav"
        sf.write(path, np.zeros(int(16000 * seconds)), 16000, subtype="PCM_16")
        rows.append({"utt_id": f"u{i}", "path": str(path), "label": label, "speaker": "s1",
                     "split": "Train" if i < 5 else "Test1", "transcript": f"words {i}"})
    return root, pd.DataFrame(rows)


def test_listening_samples_embed_a_few_small_train_files_per_class(tmp_path):
    root, table = _corpus(tmp_path, generated=True)
    samples = listening_samples(table, root, per_class=2, seed=0)
    rows = samples.rows
    assert sorted(rows["label"]) == ["A", "A", "S"]  # S has one Train file at or below its median size
    assert set(rows["split"]) == {"Train"}
    assert samples.embedded_bytes == sum((root / "Audios" / f"{u}.wav").stat().st_size for u in rows["utt_id"])
    page = samples._repr_html_()
    assert page.count("<audio controls") == 3 and page.count("data:audio/wav;base64,") == 3
    assert listening_samples(table, root, per_class=2, seed=0).rows.equals(rows)  # seeded


def test_listening_samples_never_embed_a_licensed_corpus(tmp_path):
    root, table = _corpus(tmp_path, generated=False)
    samples = listening_samples(table, root)
    assert samples.embedded_bytes == 0 and "<audio" not in samples._repr_html_()
    assert "licensed" in samples.note
