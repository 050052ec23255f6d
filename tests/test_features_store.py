"""Feature stores at corpus scale (issue 9, section 1): memory-mapped shards read lazily, the size check before
extracting, the persistent audio hash index, the SSL layers kept, and training from a lazily read store.

Tiny inputs only: a few 0.3 s noise files and a 2-layer, 32-wide wav2vec2 saved with save_pretrained."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from sercore.features import cache as cache_module
from sercore.features.cache import CacheWarning, HashIndex, sha256_file
from sercore.features.extraction import FeatureError
from sercore.features.store import FeatureStore, LazyFeatures, check_room, extract_to_store
from sercore.train.datasets import CropItems, EvalItems, Utterances


class ToyEncoder:
    """Deterministic audio encoder: wave -> [2, T, 3] float16 (T = samples // 160); counts its calls."""

    modality, sample_rate, name, fingerprint = "audio", 16000, "toy", "toy-v1"

    def __init__(self, fail_on: int | None = None):
        self.settings, self.calls, self.fail_on = {"scale": 1.0}, 0, fail_on

    def __call__(self, wave):
        self.calls += 1
        if self.fail_on is not None and self.calls == self.fail_on:
            raise KeyboardInterrupt  # an interrupted extraction
        if wave.size < 320:
            raise FeatureError("too short for the toy encoder", "too short")
        frames = wave[: wave.size // 160 * 160].reshape(-1, 160)
        t = frames.mean(axis=1)
        return np.stack([np.stack([t, 2 * t, t + 1], axis=1), np.stack([-t, t * t, t - 1], axis=1)]).astype(
            np.float16)

    def output_bytes(self, seconds):
        return int(seconds * 100) * 2 * 3 * 2


def write_wavs(folder: Path, n: int, seconds: float = 0.3, seed: int = 0) -> list[Path]:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = folder / f"u{i}.wav"
        sf.write(path, (0.1 * rng.standard_normal(int(16000 * seconds * (1 + i % 3)))).astype(np.float32), 16000)
        paths.append(path)
    return paths


def table_of(paths) -> pd.DataFrame:
    return pd.DataFrame({"path": [str(p) for p in paths]})


def test_store_serves_lazy_memmaps_equal_to_the_encoder_and_reuses_them(tmp_path):
    paths = write_wavs(tmp_path / "wav", 5)
    encoder = ToyEncoder()
    first = extract_to_store(table_of(paths), encoder, tmp_path / "cache", progress=False)
    assert encoder.calls == 5 and (first.stats.hits, first.stats.misses) == (0, 5)
    again = ToyEncoder()
    second = extract_to_store(table_of(paths), again, tmp_path / "cache", progress=False)
    assert again.calls == 0 and second.stats.hits == 5  # every utterance read from the store
    from sercore.data.audio import read_audio

    for i, path in enumerate(paths):
        item = second[i]
        assert isinstance(item, np.memmap) and not item.flags.writeable
        np.testing.assert_array_equal(item, ToyEncoder()(read_audio(path)))
        assert second.shape_of(i) == item.shape
    shards = list(FeatureStore(tmp_path / "cache", encoder).folder.glob("shard-*.npy"))
    assert len(shards) == 1 and np.load(shards[0], mmap_mode="r").dtype == np.float16
    assert second.nbytes() == sum(second[i].nbytes for i in range(5))


def test_shards_are_written_with_the_umask_and_leave_no_temp_files(tmp_path):
    paths = write_wavs(tmp_path / "wav", 3)
    old = os.umask(0o027)
    try:
        extract_to_store(table_of(paths), ToyEncoder(), tmp_path / "cache", progress=False)
    finally:
        os.umask(old)
    folder = FeatureStore(tmp_path / "cache", ToyEncoder()).folder
    files = sorted(p.name for p in folder.iterdir())
    assert not [f for f in files if f.endswith(".tmp")] and len(files) == 2
    for name in files:
        assert stat.S_IMODE((folder / name).stat().st_mode) == 0o640


def test_an_interrupted_extraction_keeps_its_finished_shards_and_computes_only_the_rest(tmp_path):
    paths = write_wavs(tmp_path / "wav", 6)
    with pytest.raises(KeyboardInterrupt):
        # a shard per utterance (shard_bytes=1): the 4th utterance interrupts, 3 are committed
        extract_to_store(table_of(paths), ToyEncoder(fail_on=4), tmp_path / "cache", progress=False, shard_bytes=1)
    folder = FeatureStore(tmp_path / "cache", ToyEncoder()).folder
    assert not list(folder.glob("*.tmp")) and len(list(folder.glob("shard-*.index.json"))) == 3
    rest = ToyEncoder()
    features = extract_to_store(table_of(paths), rest, tmp_path / "cache", progress=False)
    assert rest.calls == 3 and features.stats.hits == 3 and all(features[i] is not None for i in range(6))


def test_a_damaged_shard_is_named_skipped_and_recomputed(tmp_path):
    paths = write_wavs(tmp_path / "wav", 3)
    extract_to_store(table_of(paths), ToyEncoder(), tmp_path / "cache", progress=False)
    data = next(FeatureStore(tmp_path / "cache", ToyEncoder()).folder.glob("shard-*.npy"))
    with open(data, "r+b") as handle:
        handle.truncate(data.stat().st_size - 10)
    encoder = ToyEncoder()
    with pytest.warns(CacheWarning, match=r"shard-.*index\.json is unusable .*bytes"):
        features = extract_to_store(table_of(paths), encoder, tmp_path / "cache", progress=False)
    assert encoder.calls == 3 and features[2] is not None


def test_verify_finds_bytes_changed_after_writing(tmp_path):
    paths = write_wavs(tmp_path / "wav", 2)
    extract_to_store(table_of(paths), ToyEncoder(), tmp_path / "cache", progress=False)
    store = FeatureStore(tmp_path / "cache", ToyEncoder())
    assert store.verify() == {}
    data = next(store.folder.glob("shard-*.npy"))
    with open(data, "r+b") as handle:
        handle.seek(-2, os.SEEK_END)
        handle.write(b"\x00\x7c")  # +Inf in float16, same size
    assert len(store.verify()) == 1


def test_failed_rows_are_none_and_counted_and_identical_files_are_computed_once(tmp_path):
    paths = write_wavs(tmp_path / "wav", 2)
    blip = tmp_path / "wav" / "blip.wav"
    sf.write(blip, np.zeros(100, dtype=np.float32), 16000)
    table = table_of([paths[0], tmp_path / "absent.wav", blip, paths[1], paths[0]])
    encoder = ToyEncoder()
    features = extract_to_store(table, encoder, tmp_path / "cache", progress=False)
    assert [features[i] is None for i in range(5)] == [False, True, True, False, False]
    assert features.failed == {1: "audio file missing", 2: "too short"} and encoder.calls == 3
    np.testing.assert_array_equal(features[0], features[4])
    kept = features.subset([0, 2, 3])
    assert len(kept) == 3 and kept.failed == {1: "too short"} and kept.shape_of(2) == features.shape_of(3)


def test_the_size_check_refuses_before_computing(tmp_path, monkeypatch):
    paths = write_wavs(tmp_path / "wav", 3)
    encoder = ToyEncoder()
    with pytest.raises(ValueError, match=r"exceed features\.max_cache_gb=1e-09") as error:
        extract_to_store(table_of(paths), encoder, tmp_path / "cache", progress=False, max_gb=1e-9)
    assert "\n" not in str(error.value) and encoder.calls == 0
    for bad in (0, -1, "5", True):
        with pytest.raises(ValueError, match="max_cache_gb must be a positive number"):
            check_room(FeatureStore(tmp_path / "cache", encoder), 10, bad)
    extract_to_store(table_of(paths), encoder, tmp_path / "cache", progress=False)
    with pytest.raises(ValueError, match="max_cache_gb must be a positive number"):  # refused on a warm store too
        extract_to_store(table_of(paths), encoder, tmp_path / "cache", progress=False, max_gb=-1)
    encoder.calls = 0
    import shutil

    monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(100, 100, 50))
    more = write_wavs(tmp_path / "more", 2, seed=1)
    with pytest.raises(ValueError, match=r"need about 0\.00 GB but only 0\.00 GB are free"):
        extract_to_store(table_of(more), encoder, tmp_path / "cache", progress=False)
    assert encoder.calls == 0


def test_an_unwritable_store_folder_is_a_one_line_error_naming_it(tmp_path, monkeypatch):
    import tempfile

    paths = write_wavs(tmp_path / "wav", 1)

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", refuse)  # chmod cannot stop root, who runs some CI
    with pytest.raises(OSError, match=r"feature store .*cache.* cannot be written \(Permission denied\)"):
        extract_to_store(table_of(paths), ToyEncoder(), tmp_path / "cache", progress=False)


# -- the persistent hash index ---------------------------------------------------------------------------

def forget_process_memo(monkeypatch):
    monkeypatch.setattr(cache_module, "_FILE_DIGESTS", {})


def test_the_hash_index_spares_reading_unchanged_files_and_rehashes_changed_ones(tmp_path, monkeypatch):
    paths = write_wavs(tmp_path / "wav", 3)
    for path in paths:  # older than the racy window
        os.utime(path, ns=(1_600_000_000_000_000_000, 1_600_000_000_000_000_000))
    forget_process_memo(monkeypatch)
    index = HashIndex(tmp_path / "cache")
    digests = [index.sha256(p) for p in paths]
    index.save()
    assert index.hashed == 3 and (tmp_path / "cache" / "file-sha256.json").is_file()

    forget_process_memo(monkeypatch)  # a new process
    later = HashIndex(tmp_path / "cache")
    assert [later.sha256(p) for p in paths] == digests and later.hashed == 0

    sf.write(paths[1], np.ones(8000, dtype=np.float32) * 0.1, 16000)  # new bytes, new size and mtime
    forget_process_memo(monkeypatch)
    again = HashIndex(tmp_path / "cache")
    assert again.sha256(paths[1]) != digests[1] and again.hashed == 1


def test_recent_files_are_not_persisted_and_a_tampered_index_is_rebuilt(tmp_path, monkeypatch):
    (path,) = write_wavs(tmp_path / "wav", 1)  # mtime now: inside the racy window
    forget_process_memo(monkeypatch)
    index = HashIndex(tmp_path / "cache")
    digest = index.sha256(path)
    index.save()
    assert not (tmp_path / "cache" / "file-sha256.json").exists()

    os.utime(path, ns=(1_600_000_000_000_000_000, 1_600_000_000_000_000_000))
    forget_process_memo(monkeypatch)
    index = HashIndex(tmp_path / "cache")
    index.sha256(path)
    index.save()
    file = tmp_path / "cache" / "file-sha256.json"
    blob = json.loads(file.read_text())
    blob["entries"][str(path.resolve())][2] = "0" * 64  # a wrong digest
    file.write_text(json.dumps(blob))
    forget_process_memo(monkeypatch)
    with pytest.warns(CacheWarning, match=r"file-sha256\.json fails its checksum"):
        rebuilt = HashIndex(tmp_path / "cache")
    assert rebuilt.sha256(path) == digest and rebuilt.hashed == 1
    assert sha256_file(path) == digest


# -- lazy datasets -----------------------------------------------------------------------------------------

class CountingLazy(LazyFeatures):
    reads = 0

    def __getitem__(self, i):
        CountingLazy.reads += 1
        return super().__getitem__(i)


def test_utterances_keep_a_lazy_sequence_and_read_only_what_a_batch_needs(tmp_path):
    paths = write_wavs(tmp_path / "wav", 6)
    features = extract_to_store(table_of(paths), ToyEncoder(), tmp_path / "cache", progress=False)
    lazy = CountingLazy(features.items, features.failed, features.stats)
    table = pd.DataFrame({"utt_id": [f"u{i}" for i in range(6)], "split": ["Train"] * 4 + ["Development"] * 2,
                          "label": ["ang", "hap"] * 3, "gender": ["Female"] * 6, "arousal": np.nan,
                          "valence": np.nan, "dominance": np.nan})
    data = Utterances.from_table(table, lazy, frames_per_second=100.0)
    assert data.speech is lazy
    items = CropItems(data, data.rows("Train", "label"), crop_frames=20, seed=0)
    evals = EvalItems(data, data.rows("Development", "label"), batch_size=2)
    assert CountingLazy.reads == 0  # lengths come from the index
    batch = items.batch([0, 1], epoch=0)
    assert CountingLazy.reads == 2 and tuple(batch["speech"].shape) == (2, 2, 20, 3)
    eager = Utterances.from_table(table, [np.asarray(a) for a in features], frames_per_second=100.0)
    np.testing.assert_array_equal(batch["speech"], CropItems(eager, eager.rows("Train", "label"), 20, 0).batch(
        [0, 1], epoch=0)["speech"])
    (dev,) = list(evals.batches())
    assert CountingLazy.reads == 4 and dev["speech"].shape[2] == max(features.shape_of(i)[1] for i in (4, 5))


# -- SSL layers and a training run from the store -----------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_wav2vec2(tmp_path_factory):
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    folder = tmp_path_factory.mktemp("tiny-w2v2")
    config = Wav2Vec2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                            conv_dim=(16, 16, 16), conv_kernel=(10, 8, 4), conv_stride=(5, 8, 8),
                            num_conv_pos_embeddings=8, num_conv_pos_embedding_groups=2)
    Wav2Vec2Model(config).eval().save_pretrained(folder)
    return folder


def test_ssl_layers_last_keeps_the_last_state_and_output_bytes_predict_the_size(tiny_wav2vec2):
    from sercore.features.ssl import SSLEncoder

    wave = (0.1 * np.random.default_rng(0).standard_normal(16000)).astype(np.float32)
    every = SSLEncoder(tiny_wav2vec2, device="cpu")
    last = SSLEncoder(tiny_wav2vec2, device="cpu", layers="last")
    pick = SSLEncoder(tiny_wav2vec2, device="cpu", layers=[2, 0])
    states = every(wave)
    assert states.shape[0] == 3 and last(wave).shape == (1, *states.shape[1:])
    np.testing.assert_array_equal(last(wave), states[-1:])
    np.testing.assert_array_equal(pick(wave), states[[2, 0]])
    assert every.output_bytes(1.0) == states.nbytes and last.output_bytes(1.0) == states[-1:].nbytes
    assert "layers" not in every.settings and last.settings["layers"] == "last"  # "all": the key as before
    with pytest.raises(ValueError, match=r"indices 0\.\.2 .*got \[3\]"):
        SSLEncoder(tiny_wav2vec2, layers=[3])


def test_ssl_training_runs_read_the_store_lazily_with_the_layers_each_model_reads(tmp_path, tiny_wav2vec2,
                                                                                   monkeypatch):
    import sercore.train.run as run_module
    from sercore.train import train_run

    corpus = tmp_path / "corpus"
    rows = ["path,label,split,arousal,valence,dominance"]
    for i, path in enumerate(write_wavs(corpus / "wav", 12, seconds=0.4)):
        split = ("Train", "Train", "Development", "Test1")[i % 4]
        rows.append(f"wav/{path.name},{('ang', 'hap')[i // 4 % 2]},{split},{1 + i % 7},{2 + i % 5},{3 + i % 3}")
    (corpus / "manifest.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    seen = []
    real = run_module.fit_and_evaluate
    monkeypatch.setattr(run_module, "fit_and_evaluate",
                        lambda model, data, *a, **k: seen.append(data) or real(model, data, *a, **k))
    common = {"max_steps": 2, "eval_every": 1, "n_boot": 5, "progress": False, "device": "cpu",
              "crop_seconds": 0.2, "batch_size": 4, "cache_dir": str(tmp_path / "cache"),
              "features.ssl_model_dir": str(tiny_wav2vec2), "model.speech": "ssl"}
    fusion = train_run("fusion", corpus / "manifest.csv", tmp_path / "fusion", profile="smoke",
                       **{**common, "model.text": False, "features.max_cache_gb": 1.0})
    dimensional = train_run("dimensional", corpus / "manifest.csv", tmp_path / "dim", profile="smoke",
                            **{**common, "avd_range": [1, 7], "model.layers": "last"})
    assert isinstance(seen[0].speech, LazyFeatures) and isinstance(seen[1].speech, LazyFeatures)
    assert seen[0].speech.shape_of(0)[0] == 3 and seen[1].speech.shape_of(0)[0] == 1  # all states / last only
    assert "max_cache_gb" not in fusion["provenance"]["parameters"]["features"]  # a limit, not an identity
    assert "macro_f1" in fusion["splits"]["Test1"] and "ccc_mean" in dimensional["splits"]["Test1"]
    assert len(list((tmp_path / "cache" / "stores").glob("ssl-*/*"))) == 2  # one store per layer set


def test_text_token_states_go_to_a_store_keyed_by_the_transcript(tmp_path):
    from sercore.features.text import TextEncoder

    encoder = TextEncoder(device="cpu")
    table = pd.DataFrame({"transcript": ["the bus was late again", "", None, "the bus was late again"]})
    first = extract_to_store(table, encoder, tmp_path / "cache", progress=False)
    assert (first.stats.hits, first.stats.misses) == (0, 2)  # "" and None are the same empty transcript
    second = extract_to_store(table, encoder, tmp_path / "cache", progress=False)
    assert second.stats.hits == 4 and isinstance(second[0], np.memmap)
    np.testing.assert_array_equal(second[0], encoder("the bus was late again"))
    np.testing.assert_array_equal(second[1], second[2])
    assert encoder.output_bytes("the bus was late again") == second[0].nbytes


def test_the_features_command_fills_the_store_that_training_reads(tmp_path, tiny_wav2vec2, capsys):
    from sercore.cli import main
    from sercore.features import make_encoder

    paths = write_wavs(tmp_path / "wav", 3)
    (tmp_path / "m.csv").write_text("path,label\n" + "".join(f"{p},ang\n" for p in paths), encoding="utf-8")
    assert main(["features", "--corpus", str(tmp_path / "m.csv"), "--encoder", f"ssl:{tiny_wav2vec2}",
                 "--cache", str(tmp_path / "cache"), "--set", "layers=last", "--no-progress"]) == 0
    assert "3 computed" in capsys.readouterr().out
    # what a dimensional run asks for (layers last, the profile's ssl settings): every row a hit
    encoder = make_encoder(f"ssl:{tiny_wav2vec2}", layers="last", dtype="float16", chunk_seconds=None,
                           last_state="layer", device="cpu")
    again = extract_to_store(table_of(paths), encoder, tmp_path / "cache", progress=False)
    assert again.stats.hits == 3 and again.shape_of(0)[0] == 1
