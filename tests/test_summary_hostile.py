"""The listening-check helpers leave an unreadable file out and say so, instead of stopping the page."""

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from sercore.data import prosody_summary
from sercore.plots import class_spectrograms


def _table(tmp_path):
    t = np.arange(16000) / 16000
    good = tmp_path / "good.wav"
    sf.write(good, 0.3 * np.sin(2 * np.pi * 150 * t), 16000, subtype="PCM_16")
    bad = tmp_path / "nan.wav"
    wave = 0.3 * np.sin(2 * np.pi * 150 * t)
    wave[100] = np.nan
    sf.write(bad, wave, 16000, subtype="FLOAT")
    return pd.DataFrame({"utt_id": ["good", "nan"], "path": [str(good), str(bad)], "label": ["A", "A"],
                         "speaker": ["s1", "s1"], "transcript": ["one two", "three four"]})


def test_prosody_summary_leaves_out_unreadable_audio_and_warns(tmp_path):
    with pytest.warns(UserWarning, match="1 utterance"):
        summary = prosody_summary(_table(tmp_path))
    assert int(summary.loc["A", "utterances"]) == 1
    assert len(summary.attrs["skipped"]) == 1 and "nan.wav" in summary.attrs["skipped"][0]
    assert abs(summary.loc["A", "median_f0_hz"] - 150) < 5


def test_class_spectrograms_draws_a_note_for_unreadable_audio(tmp_path):
    fig = class_spectrograms(_table(tmp_path), per_class=2)
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert any("non-finite" in t for t in texts)
