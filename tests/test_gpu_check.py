"""The GPU check's bookkeeping, without a GPU and without triton: imports on a machine that lacks the audio and
book packages, the files and their columns, provenance keys, NaN on an out-of-memory, the time budget cutting
work, junit parsing, the per-test cap, the autotune archive and the roofline arithmetic."""

import importlib.util
import json
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path

import pytest
import torch

from sercore import bench
from sercore.gpucheck import FILES, checks, pack_autotune, restore_autotune, roofline, run_check, study

REPO = Path(__file__).resolve().parents[1]
BLOCKED = ("soundfile", "librosa", "papermill", "nbformat", "nbclient", "jupyter_book")
TINY = {"dim": 16, "heads": 2, "seconds": (0.1, 0.3), "text_tokens": 2, "warmup": 1, "repeats": 2,
        "matmul_n": 32, "copy_bytes": 1 << 16}
HAS_TRITON = importlib.util.find_spec("triton") is not None


@pytest.fixture(autouse=True)
def _environment_restored(monkeypatch):
    """run_check sets these for itself and its subprocesses: put them back after each test."""
    for name in ("TRITON_CACHE_DIR", "FLA_CACHE_RESULTS", "TRITON_INTERPRET"):
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)


def test_attention_bench_gpucheck_and_kernel_tests_import_without_audio_and_book_packages():
    code = textwrap.dedent(f"""
        import importlib, sys
        for name in {BLOCKED!r}:
            sys.modules[name] = None  # import of it now fails, as on the GPU machine
        import sercore.attention, sercore.bench, sercore.gpucheck.study, sercore.gpucheck.checks
        import sercore.gpucheck.roofline, sercore.gpucheck.timecap, sercore.gpucheck.online_ssl, sercore.models.online
        for name in ("softmax", "retnet", "lightnet", "gsa", "fox", "kda", "keysparse"):
            sercore.attention.mechanism_class(name)
        sys.path.insert(0, "tests")
        for test in ("test_attention_fla_kernels", "test_attention_fla_kernels_gsa_kda",
                     "test_attention_gpu_softmax_keysparse", "kernel_errors"):
            importlib.import_module(test)
        from sercore.cli import build_parser, main
        parser = build_parser()
        assert "gpu-check" in parser._subparsers._group_actions[0].choices, "gpu-check must stay available"
        print("unavailable", parser.unavailable)
        import torch
        from sercore.gpucheck.study import Budget
        ssl = sercore.gpucheck.online_ssl.run_ssl_step(Budget(120), torch.device("cpu"))
        assert ssl["error"] == "" and ssl["steps_timed"] > 0, ssl  # the online step needs no audio package
    """)
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert "unavailable" in done.stdout


def test_a_command_left_out_for_a_missing_package_fails_in_one_line(monkeypatch, capsys):
    from sercore import cli

    monkeypatch.setitem(sys.modules, "soundfile", None)
    for name in [m for m in sys.modules if m.startswith("sercore.data")]:
        monkeypatch.delitem(sys.modules, name)
    assert cli.main(["data", "generate"]) == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and "sercore.data.cli (needs soundfile)" in error


def busy_clock(step=1.0):
    """A clock that advances `step` seconds every time it is read: each shape costs a few readings."""
    now = [0.0]

    def clock():
        now[0] += step
        return now[0]
    return clock


def test_rehearsal_bookkeeping_files_provenance_and_the_loader(tmp_path):
    out = tmp_path / "gpu"
    meta = run_check(out, rehearse=True, budget_s=600, steps=("errors", "guard", "study"), sizes=TINY,
                     wheels_dir=tmp_path / "no-wheels", triton_cache=tmp_path / "triton-cache")
    assert sorted(p.name for p in out.iterdir()) == sorted(FILES)
    for key in ("git_sha", "versions", "device", "gpu", "ceilings", "budget", "skipped", "steps", "dtypes",
                "created", "parameters", "autotune", "wheels"):
        assert key in meta, key
    assert json.loads((out / "provenance.json").read_text())["budget"]["seconds"] == 600
    assert meta["dtypes"] == {"paper": "float32", "tuned": "bfloat16"}
    assert set(meta["ceilings"]["matmul_tflops"]) == {"bfloat16", "float32"}
    table = bench.load_gpu_results(out)
    needed = {"mechanism", "protocol", "direction", "seconds", "tokens", "dtype", "median_ms", "p20_ms", "p80_ms",
              "peak_mem_mb", "floor_ms", "error"}
    assert needed <= set(table.columns)
    # 7 mechanisms (+ the triton key-sparse variant under tuned) x 2 directions x 2 lengths
    assert len(table) == (7 * 2 + 8 * 2) * 2
    assert set(table["direction"]) == {"forward", "train"} and set(table["protocol"]) == {"paper", "tuned"}
    timed = table[table["error"] == ""]
    assert (timed["p20_ms"] <= timed["median_ms"]).all() and (timed["median_ms"] <= timed["p80_ms"]).all()
    assert (timed["floor_ms"] > 0).all() and (timed["ratio_to_floor"] > 0).all()
    assert (table["tokens"] == table["speech_frames"] + table["text_tokens"]).all()
    triton_rows = table[table["implementation"] == "sercore.keysparse (triton)"]
    if not HAS_TRITON:
        assert (triton_rows["error"] == "skipped: no triton").all() and triton_rows["median_ms"].isna().all()
        errors = (out / "kernel_errors.csv").read_text()
        assert "skipped: no triton" in errors
        assert "skipped: no triton" in (out / "hopper_guard.csv").read_text()
    assert bench.load_gpu_results(tmp_path / "absent") is None


def test_out_of_memory_is_a_nan_row_with_the_error_and_the_sweep_goes_on(monkeypatch):
    real_build = study.build

    def build_that_runs_out(name, dim, heads, **options):
        mixer = real_build(name, dim, heads, **options)
        forward = mixer.forward

        def forward_or_oom(x, mask=None):
            if x.shape[1] > 10:
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 12.00 GiB")
            return forward(x, mask)
        mixer.forward = forward_or_oom
        return mixer

    monkeypatch.setattr(study, "build", build_that_runs_out)
    rows = study.run_study([], study.Budget(600), torch.device("cpu"), dim=16, heads=2, seconds=(0.1, 0.3, 0.1),
                           text_tokens=2, mechanisms=("softmax",), protocols=("paper",), directions=("forward",),
                           warmup=1, repeats=2)
    assert [r["tokens"] for r in rows] == [7, 17, 7]
    assert rows[1]["error"].startswith("OOM: CUDA out of memory") and rows[1]["median_ms"] != rows[1]["median_ms"]
    assert rows[0]["error"] == "" and rows[0]["median_ms"] > 0
    assert rows[2]["error"] == "" and rows[2]["median_ms"] > 0, "the length after the OOM is still timed"


def test_the_budget_skips_the_remaining_shapes_records_them_and_still_writes_every_file(tmp_path):
    out = tmp_path / "gpu"
    # each clock reading costs 1 s: ceilings and the first shapes use up a 60 s budget (10 s reserve)
    meta = run_check(out, rehearse=True, budget_s=60, steps=("study",), sizes=TINY, clock=busy_clock(1.0),
                     wheels_dir=tmp_path / "none", triton_cache=tmp_path / "cache")
    table = bench.load_gpu_results(out)
    skipped = table["error"].str.startswith("skipped: time budget")
    assert skipped.any() and (~skipped).any()
    assert skipped.sum() == len(meta["skipped"])
    assert meta["skipped"][0].startswith(("tuned/", "paper/"))
    assert sorted(p.name for p in out.iterdir()) == sorted(FILES)
    assert meta["budget"]["used"] >= 50


def test_budget_arithmetic():
    budget = study.Budget(10, clock=busy_clock(3.0))
    assert budget.allows(0)            # 3 s used
    assert not budget.allows(5)        # 6 s used, 4 left
    assert budget.skip("x").startswith("skipped: time budget (10 s)") and budget.skipped == ["x"]


def test_junit_rows_and_the_per_test_cap(tmp_path):
    (tmp_path / "test_slow.py").write_text(textwrap.dedent("""
        import time, pytest
        def test_fast(): pass
        def test_slow(): time.sleep(30)
        def test_fails(): assert 1 == 2, "one is not two"
        @pytest.mark.skip(reason="not here")
        def test_skipped(): pass
    """))
    junit = tmp_path / "junit.xml"
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "sercore.gpucheck.timecap", "-p",
                           "no:cacheprovider", f"--junitxml={junit}", "test_slow.py"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "SERCORE_TEST_CAP_S": "1"})
    rows = {row["test"].split("::")[-1]: row for row in checks.parse_junit(junit)}
    assert rows["test_fast"]["outcome"] == "passed"
    assert rows["test_slow"]["outcome"] == "failed" and "over the per-test cap of 1 s" in rows["test_slow"]["message"]
    assert rows["test_slow"]["seconds"] < 10, done.stdout
    assert rows["test_fails"]["outcome"] == "failed" and "one is not two" in rows["test_fails"]["message"]
    assert rows["test_skipped"]["outcome"] == "skipped" and rows["test_skipped"]["message"] == "not here"


def test_at_the_tests_timeout_the_finished_tests_keep_their_rows_and_the_rest_are_named_not_run(tmp_path):
    (tmp_path / "test_steps.py").write_text(textwrap.dedent("""
        import time
        def test_first(): pass
        def test_hangs(): time.sleep(600)
        def test_after(): pass
    """))
    # 30 s: pytest's own start-up must fit before the timeout on a loaded two-core machine (8 s did not)
    rows = checks.run_tests(tmp_path, tmp_path / "junit.xml", timeout=30, per_test_cap=0, files=("test_steps.py",),
                            marker="", env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    by_name = {row["test"].split("::")[-1]: row for row in rows}
    assert by_name["test_first"]["outcome"] == "passed"
    assert by_name["test_after"]["outcome"] == "not run" and "timeout (30 s)" in by_name["test_after"]["message"]
    assert by_name["test_after"]["test"] == "test_steps::test_after"
    assert checks.junit_id("tests/test_x.py::Case::test_y[a-b]") == "tests.test_x.Case::test_y[a-b]"


def test_autotune_results_round_trip_and_unsafe_members_are_not_extracted(tmp_path):
    cache = tmp_path / "cache"
    (cache / "ab12").mkdir(parents=True)
    (cache / "ab12" / "chunk_fwd_kernel_h.autotune.json").write_text('{"configs_timings": []}')
    (cache / "ab12" / "chunk_fwd_kernel_h.cubin").write_bytes(b"\0" * 100)  # compiled code is not packed
    assert pack_autotune(cache, tmp_path / "autotune.tar.gz") == 1
    fresh = tmp_path / "fresh"
    assert restore_autotune(tmp_path / "autotune.tar.gz", fresh) == 1
    assert (fresh / "ab12" / "chunk_fwd_kernel_h.autotune.json").read_text() == '{"configs_timings": []}'
    evil = tmp_path / "evil.tar.gz"
    with tarfile.open(evil, "w:gz") as tar:
        tar.add(cache / "ab12" / "chunk_fwd_kernel_h.autotune.json", arcname="../outside.autotune.json")
    assert restore_autotune(evil, fresh) == 0 and not (tmp_path / "outside.autotune.json").exists()
    assert restore_autotune(tmp_path / "missing.tar.gz", fresh) == 0


def test_roofline_counts_and_floor():
    softmax = bench.build("softmax", 64, 4)
    tokens = 100
    assert roofline.forward_flops("softmax", softmax, tokens) == 2 * tokens * 4 * 64 * 64 + 4 * tokens ** 2 * 64
    retnet = bench.build("retnet", 64, 4)
    short, long = (roofline.forward_flops("retnet", retnet, t) for t in (100, 200))
    assert long == pytest.approx(2 * short), "the recurrent form is linear in the length"
    params = sum(p.numel() for p in softmax.parameters())
    assert roofline.min_bytes(softmax, tokens, 64, 2, "forward") == 2 * (params + 2 * tokens * 64)
    assert roofline.min_bytes(softmax, tokens, 64, 2, "train") == 2 * (3 * params + 4 * tokens * 64)
    assert roofline.floor_ms(1e12, 1e9, 1e12, 1e12) == pytest.approx(1000.0)  # compute-bound: 1 s
    assert roofline.floor_ms(1e9, 1e12, 1e12, 1e11) == pytest.approx(10000.0)  # memory-bound: 10 s


def test_protocols_are_the_one_dict_of_path_choices():
    assert bench.protocol_options("paper", "softmax") == {"mode": "naive"}
    assert bench.protocol_options("tuned", "keysparse") == {"mode": "memory-linear"}
    labels = [label for label, _, _ in study.implementations("tuned", "keysparse", torch.device("cpu"))]
    assert labels == ["sercore.keysparse (memory-linear)", "sercore.keysparse (triton)"]
    assert study.implementations("paper", "kda", torch.device("cpu"))[0][2] is False, "no fla layer on the CPU"
    with pytest.raises(ValueError, match="unknown protocol"):
        bench.protocol_options("fast", "softmax")


def test_the_online_ssl_step_rehearses_a_tiny_config_and_no_estimate_takes_it_for_a_gpu_result(tmp_path):
    from sercore.gpucheck import online_ssl

    out = tmp_path / "gpu"
    meta = run_check(out, rehearse=True, budget_s=600, steps=("ssl",), sizes=TINY, wheels_dir=tmp_path / "none",
                     triton_cache=tmp_path / "cache")
    ssl = json.loads((out / "provenance.json").read_text())["ssl"]
    assert ssl == meta["ssl"]
    assert ssl["rehearsal"] is True and ssl["config"] == "tiny" and ssl["device"] == "cpu" and ssl["error"] == ""
    assert ssl["steps_timed"] == online_ssl.REHEARSAL["steps"] and ssl["batch"] == online_ssl.REHEARSAL["batch"]
    assert ssl["p20_s"] <= ssl["seconds_per_step"] <= ssl["p80_s"] and ssl["frozen_seconds_per_step"] > 0
    assert ssl["crops_per_second"] == pytest.approx(ssl["batch"] / ssl["seconds_per_step"])
    # the tiny config's sizes: only the layer weights (L + 1 = 3 of them) and the fusion model train
    assert 0 < ssl["trainable_parameters"] < ssl["ssl_parameters"] < 100_000
    assert meta["steps"]["ssl"] < 30, "the rehearsal must stay a tiny run"
    assert ssl["max_memory_allocated_mb"] is None and ssl["weights_mb"] is None, "no CUDA allocator on the CPU"
    assert "NaN" not in (out / "provenance.json").read_text(), "strict JSON: what was not measured is null"
    with pytest.raises(ValueError, match=r"provenance.json: the online-SSL result is a CPU rehearsal \(tiny"):
        online_ssl.load_ssl_result(out)
    with pytest.raises(ValueError, match="no such file"):
        online_ssl.load_ssl_result(tmp_path / "absent")


def test_the_online_ssl_step_is_skipped_when_its_share_is_spent():
    from sercore.gpucheck import online_ssl

    budget = study.Budget(600)
    skipped = online_ssl.run_ssl_step(budget, torch.device("cpu"), share_s=0)
    assert skipped["error"].startswith("skipped: time budget") and budget.skipped == ["ssl"]
    assert skipped["steps_timed"] == 0 and skipped["seconds_per_step"] is None


def test_a_gpu_ssl_result_loads_and_a_failed_one_does_not(tmp_path):
    from sercore.gpucheck import online_ssl

    measured = {"rehearsal": False, "device": "cuda", "config": "wavlm-large", "batch": 32, "steps_timed": 20,
                "crop_seconds": 3.0, "seconds_per_step": 0.05, "frozen_seconds_per_step": 0.03,
                "max_memory_allocated_mb": 9000.0, "error": ""}
    (tmp_path / "provenance.json").write_text(json.dumps({"ssl": measured}))
    assert online_ssl.load_ssl_result(tmp_path) == measured
    (tmp_path / "provenance.json").write_text(json.dumps({"ssl": {**measured, "steps_timed": 0,
                                                                  "error": "OOM: CUDA out of memory"}}))
    with pytest.raises(ValueError, match="timed nothing: OOM"):
        online_ssl.load_ssl_result(tmp_path)
    (tmp_path / "provenance.json").write_text(json.dumps({"ssl": {**measured, "frozen_seconds_per_step": None}}))
    with pytest.raises(ValueError, match="lacks frozen_seconds_per_step"):
        online_ssl.load_ssl_result(tmp_path)
    (tmp_path / "provenance.json").write_text(json.dumps({"gpu": {}}))
    with pytest.raises(ValueError, match="no online-SSL result"):
        online_ssl.load_ssl_result(tmp_path)
    (tmp_path / "provenance.json").write_text(json.dumps({"ssl": measured})[:40])  # cut short in the copy
    with pytest.raises(ValueError, match="not a JSON file the GPU check wrote") as error:
        online_ssl.load_ssl_result(tmp_path)
    assert "\n" not in str(error.value) and "provenance.json" in str(error.value)
    (tmp_path / "provenance.json").write_text("[]")
    with pytest.raises(ValueError, match="no online-SSL result"):
        online_ssl.load_ssl_result(tmp_path)
