"""The efficiency benchmark runs on the CPU, records every length, and refuses unknown settings."""

import pytest

from sercore import bench


def test_cpu_sweep_gives_one_row_per_mechanism_and_length(tmp_path):
    table = bench.benchmark(["softmax"], lengths=[16, 32], dim=32, heads=2, device="cpu", repeats=2, progress=False)
    assert list(table["speech_frames"]) == [16, 32]
    assert list(table["length"]) == [16 + bench.DEFAULT_TEXT_TOKENS, 32 + bench.DEFAULT_TEXT_TOKENS]
    assert (table["ms"] > 0).all()
    # CPU memory: the resident high-water mark one call adds (bench.cpu_peak_mb), in GB
    assert ((table["peak_gb"] >= 0) & (table["peak_gb"] < 1)).all()
    assert (table["p20_ms"] <= table["ms"]).all() and (table["ms"] <= table["p80_ms"]).all()
    csv = bench.save(table, tmp_path, {"dim": 32})
    assert csv.read_text().startswith("mechanism,")
    assert (tmp_path / "bench.json").is_file()


def test_unknown_protocol_and_mechanism_are_errors():
    with pytest.raises(ValueError, match="protocol"):
        bench.benchmark(["softmax"], lengths=[8], protocol="fastest", progress=False)
    with pytest.raises(ValueError, match="valid"):
        bench.benchmark(["area"], lengths=[8], progress=False)
