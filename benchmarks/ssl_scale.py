"""What a run of the main paper's fusion study on MSP-Podcast 1.11 with WavLM-Large needs: disk, RAM, GPU memory
and time per epoch, each figure labelled measured, derived (from what) or assumed (issue 9's closing note).

    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/ssl_scale.py [--gpu-results book/gpu] [--peak-crops 3 5.5]

Not a test: it prints figures (6 to 8 minutes on one shared CPU core). What it builds: WavLM-Large from its config
alone (sercore.gpucheck.online_ssl.WAVLM_LARGE; random weights, nothing downloaded) behind sercore's SSLEncoder
and OnlineSSLModel, the front end online SSL trains through, feeding the paper's fusion model (FusionModel's
defaults: 25 states of 1024, BERT-large text states of 1024, softmax, width 1024, 4 heads, 8 classes). The
model is built in memory and handed to the encoder (SSLEncoder.use_model) instead of written with
save_pretrained and loaded again, which would write 1.26 GB for the same modules; only config.json is written.

Measured here, on the CPU in fp32 with one thread:
  * parameters and weight bytes;
  * FLOPs (torch.utils.flop_counter.FlopCounterMode: matmuls, convolutions and attention, 2 per multiply-add;
    element-wise work such as the layer weighting is not counted) of the frozen forward (SSLEncoder.states, batch 1)
    on a 3 s crop, the paper's 5.5 s crop (train.crop_seconds of the paper profile; sercore.fidelity's
    features.ssl.chunk_seconds entry) and the mean utterance, and of the fusion model's forward + backward at
    batch 32 on the states of those crops (and its forward on the mean utterance, for evaluation);
  * peak memory of the frozen forward at batch 32 under inference_mode, and of the fusion model's forward +
    backward at batch 32 (its fp32 states copy included, as OnlineSSLModel makes it): sercore.bench.cpu_peak_mb,
    the resident high-water mark a call adds in a forked child (VmHWM after clear_refs, mmap threshold 128 KiB);
  * CPU seconds of the frozen forward per crop (process time, median of --repeats).
Then derived: the GPU memory of a training step in bf16 (the frozen model) and fp32 (the trainable part; the
paper profile leaves amp off), and the time per epoch from the FLOPs at an assumed share of the H200's peak; with
--gpu-results DIR (a GPU check's folder, provenance.json "ssl": sercore.gpucheck.online_ssl) the measured step
time and peak memory replace those assumptions.
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time
from pathlib import Path

import torch

from sercore.bench import cpu_peak_mb
from sercore.features.ssl import SSLEncoder
from sercore.gpucheck.online_ssl import SAMPLE_RATE, frontend, load_ssl_result
from sercore.profiles import section

# MSP-Podcast 1.11 utterances per split (/work/shared/docs/reference-notes.md section 6)
SPLITS = {"Train": 84_030, "Development": 19_815, "Test1": 30_647, "Test2": 14_815, "Test3": 2_347}
HOURS = 238.0  # issue 9: "MSP-Podcast 1.11 (~238 h)"; no per-split hours in the notes, so one mean for all
TEXT_TOKENS = 32  # sercore.bench.DEFAULT_TEXT_TOKENS: transcript tokens per utterance, assumed
BF16_PEAK, FP32_PEAK = 989e12, 67e12  # H200 SXM dense bf16 and plain fp32 (no TF32) FLOP/s, NVIDIA's datasheet
UTILISATION = (0.25, 0.50)
BATCH = 32
# benchmarks/memory.py, closing note of 2026-12-01 (tiny wav2vec2, 500 -> 4,000 utterances, peak RSS MB)
MEMORY_BENCH = {"cached train": (494.4, 511.2), "online (glibc defaults)": (582.0, 668.0),
                "online (MALLOC_MMAP_THRESHOLD_=131072)": (575.0, 601.0)}
MEMORY_SIZES = (500, 4000)
GB, MB = 1e9, 1e6


def line(name: str, value: str, how: str) -> None:
    print(f"  {name:<54} {value:>20}   [{how}]", flush=True)


def flops(fn) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return float(counter.get_total_flops())


def waves(batch: int, seconds: float, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    samples = int(round(seconds * SAMPLE_RATE))
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, samples, generator=generator), torch.full((batch,), samples)


def fusion_batch(fusion, encoder: SSLEncoder, batch: int, seconds: float) -> dict:
    """What OnlineSSLModel hands the fusion model: fp32 states [B, S, T, D] (a fresh tensor, as its copy is),
    the frame mask, text states and labels."""
    frames = int(encoder.frames(int(round(seconds * SAMPLE_RATE))))
    return {"speech": torch.randn(batch, encoder.n_states(), frames, encoder.hidden_size),
            "speech_mask": torch.ones(batch, frames, dtype=torch.bool),
            "text": torch.randn(batch, TEXT_TOKENS, fusion.text_dim),
            "text_mask": torch.ones(batch, TEXT_TOKENS, dtype=torch.bool),
            "label": torch.randint(0, 8, (batch,))}


def train_pass(fusion, encoder, batch, seconds):
    """The trainable part of one step: the states copy, forward, loss, backward (grads kept allocated)."""
    def run():
        b = fusion_batch(fusion, encoder, batch, seconds)
        fusion.loss(b, fusion(b)).backward()
    return run


def host_batch_seconds(encoder: SSLEncoder, seconds: float, crop_seconds: float, repeats: int) -> float:
    """Median wall seconds of WaveCropItems.batch for 32 utterances of `seconds` (noise, PCM-16 files in a temporary
    folder, so the page cache is warm): what the training loop pays on the host per step before the GPU works."""
    import numpy as np
    import pandas as pd
    import soundfile as sf

    from sercore.train.datasets import Utterances
    from sercore.train.online import WaveCropItems, Waveforms

    with tempfile.TemporaryDirectory() as folder:
        rng = np.random.default_rng(0)
        paths = [Path(folder) / f"u{i}.wav" for i in range(BATCH)]
        for path in paths:
            sf.write(path, 0.1 * rng.standard_normal(int(seconds * SAMPLE_RATE)), SAMPLE_RATE, subtype="PCM_16")
        table = pd.DataFrame({"utt_id": [p.stem for p in paths], "split": "Train", "label": "N", "gender": "Male",
                              "arousal": 4.0, "valence": 4.0, "dominance": 4.0})
        data = Utterances.from_table(table, Waveforms(paths, encoder), frames_per_second=encoder.frames_per_second)
        items = WaveCropItems(data, range(BATCH), int(round(crop_seconds * SAMPLE_RATE)), 0, encoder)
        times = []
        for epoch in range(repeats + 1):
            started = time.perf_counter()
            items.batch(range(BATCH), epoch)
            times.append(time.perf_counter() - started)
    return statistics.median(times[1:])


def measure(args) -> dict:
    torch.set_num_threads(1)
    paper = section("paper", "train")
    crops = sorted({3.0, float(paper["crop_seconds"])})
    mean_s = HOURS * 3600 / sum(SPLITS.values())
    m: dict = {"crops": crops, "mean_s": mean_s, "paper": paper}
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        net, encoder = frontend("wavlm-large", torch.device("cpu"), Path(folder))
        m["build_s"] = time.perf_counter() - started
        fusion = net.model
        wavlm = encoder.model
        m["ssl_params"] = sum(p.numel() for p in wavlm.parameters())
        m["ssl_bytes_fp32"] = sum(p.numel() * p.element_size() for p in wavlm.parameters())
        m["trainable"] = sum(p.numel() for p in net.parameters() if p.requires_grad)
        m["store_all"] = SSLEncoder(folder, layers="all").output_bytes(mean_s)
        m["store_last"] = SSLEncoder(folder, layers="last").output_bytes(mean_s)
        m["n_states"], m["fps"] = encoder.n_states(), encoder.frames_per_second
        m["frames"] = {s: int(encoder.frames(int(round(s * SAMPLE_RATE)))) for s in [*crops, mean_s]}
    for seconds in [*crops, mean_s]:
        x, n = waves(1, seconds)
        m[("ssl_flops", seconds)] = flops(lambda: encoder.states(x, n))
    fusion.train()
    for seconds in crops:
        m[("train_flops", seconds)] = flops(train_pass(fusion, encoder, BATCH, seconds)) / BATCH
    fusion.eval()
    with torch.no_grad():
        b = fusion_batch(fusion, encoder, 1, mean_s)
        m["eval_fusion_flops"] = flops(lambda: fusion(b))
    m["host_s"] = host_batch_seconds(encoder, mean_s, float(paper["crop_seconds"]), args.repeats)
    for seconds in crops:
        x, n = waves(1, seconds)
        encoder.states(x, n)  # warm
        times = []
        for _ in range(args.repeats):
            cpu = time.process_time()
            encoder.states(x, n)
            times.append(time.process_time() - cpu)
        m[("cpu_s", seconds)] = statistics.median(times)
    fusion.train()
    for seconds in args.peak_crops:
        x, n = waves(BATCH, seconds)
        m[("ssl_peak", seconds)] = cpu_peak_mb(lambda: encoder.states(x, n), timeout=900) * MB
        del x
        m[("train_peak", seconds)] = cpu_peak_mb(train_pass(fusion, encoder, BATCH, seconds), timeout=300) * MB
    return m


def report(m: dict, gpu: dict | None) -> None:
    crops, mean_s, paper = m["crops"], m["mean_s"], m["paper"]
    n_all, n_train = sum(SPLITS.values()), SPLITS["Train"]
    evaluated = {k: v for k, v in SPLITS.items() if k != "Train"}
    print("Inputs")
    line("utterances (Train/Dev/Test1/Test2/Test3)", "/".join(f"{v:,}" for v in SPLITS.values()),
         "reference notes, MSP-Podcast 1.11")
    line("audio", f"{HOURS:.0f} h", "assumed: issue 9's ~238 h for 1.11")
    line("mean utterance", f"{mean_s:.2f} s", "derived: 238 h / all utterances, assumed equal in every split")
    line("training crop (paper profile train.crop_seconds)", f"{paper['crop_seconds']} s", "the paper's, sercore.fidelity")
    line("text tokens per utterance", f"{TEXT_TOKENS}", "assumed: sercore.bench.DEFAULT_TEXT_TOKENS")
    print("Measured on this CPU (fp32, 1 thread)")
    line("WavLM-Large parameters", f"{m['ssl_params']:,}", "measured")
    line("WavLM-Large weights fp32", f"{m['ssl_bytes_fp32'] / GB:.3f} GB", "measured (sum of numel x 4)")
    line("WavLM-Large weights bf16", f"{m['ssl_bytes_fp32'] / 2 / GB:.3f} GB", "derived: fp32 / 2")
    line("trainable parameters (layer weights + fusion)", f"{m['trainable']:,}", "measured")
    line("model build (random init, 1 thread)", f"{m['build_s']:.1f} s", "measured")
    for seconds in [*crops, mean_s]:
        what = "utterance (the mean)" if seconds == mean_s else "crop"
        line(f"frozen forward FLOPs, one {seconds:.2f} s {what}, {m['frames'][seconds]} frames",
             f"{m[('ssl_flops', seconds)] / 1e9:.1f} GFLOP", "measured, FlopCounterMode")
    for seconds in crops:
        line(f"fusion fwd+bwd FLOPs per crop, batch 32, {seconds:g} s", f"{m[('train_flops', seconds)] / 1e9:.2f} GFLOP",
             "measured, FlopCounterMode / 32")
    line(f"fusion forward FLOPs, one {mean_s:.2f} s utterance", f"{m['eval_fusion_flops'] / 1e9:.2f} GFLOP",
         "measured, FlopCounterMode")
    for seconds in crops:
        line(f"frozen forward CPU time per {seconds:g} s crop", f"{m[('cpu_s', seconds)]:.2f} s",
             "measured, process time, median")
    line(f"host batch: read, crop, normalise 32 wavs of {mean_s:.2f} s", f"{m['host_s'] * 1e3:.0f} ms",
         "measured, page cache warm, median")
    peaks = [s for s in crops if ("ssl_peak", s) in m]
    for seconds in peaks:
        line(f"frozen forward peak, batch 32 x {seconds:g} s, fp32", f"{m[('ssl_peak', seconds)] / GB:.2f} GB",
             "measured, peak RSS added (cpu_peak_mb)")
        line(f"fusion fwd+bwd peak, batch 32 x {seconds:g} s, fp32", f"{m[('train_peak', seconds)] / GB:.2f} GB",
             "measured, peak RSS added (cpu_peak_mb)")

    print("Disk")
    line("audio (16 kHz PCM-16 mono)", f"{HOURS * 3600 * SAMPLE_RATE * 2 / GB:.1f} GB",
         "derived: hours x 32,000 B/s; assumed format")
    line("online SSL: SSL features stored", "0 GB", "sercore.train.online stores none")
    line("cached, all 25 states (float16)", f"{m['store_all'] * n_all / 1e12:.2f} TB",
         "derived: SSLEncoder.output_bytes(mean) x utterances")
    line("cached, last state only (float16)", f"{m['store_last'] * n_all / GB:.1f} GB",
         "derived: SSLEncoder(layers='last').output_bytes")
    text_store = TEXT_TOKENS * 1024 * 4 * n_all
    line("text store, BERT-large (float32, both modes)", f"{text_store / GB:.1f} GB",
         "derived: TextEncoder.output_bytes' rule, tokens assumed")
    line("online total: audio + text store", f"{(HOURS * 3600 * SAMPLE_RATE * 2 + text_store) / GB:.1f} GB",
         "derived: the lines above")

    print("RAM (host)")
    for name, (small, large) in MEMORY_BENCH.items():
        per_row = (large - small) * MB / (MEMORY_SIZES[1] - MEMORY_SIZES[0])
        line(f"{name}: per utterance", f"{per_row / 1e3:.1f} KB", "derived from benchmarks/memory.py figures")
        line(f"{name}: at {n_all:,} rows", f"{(small * MB + per_row * (n_all - MEMORY_SIZES[0])) / GB:.2f} GB",
             "derived: linear in the rows (the allocator's share need not be)")
    line("+ WavLM-Large fp32 on the host while loading", f"{m['ssl_bytes_fp32'] / GB:.2f} GB",
         "derived: load_model loads on the CPU, then moves")

    print(f"GPU memory, one training step, batch {BATCH} (bf16 frozen model, fp32 trainable part)")
    trainable_state = m["trainable"] * 16  # fp32 weight, grad, AdamW exp_avg and exp_avg_sq
    for seconds in peaks:
        weights = m["ssl_bytes_fp32"] / 2
        frozen = m[("ssl_peak", seconds)] / 2
        train = m[("train_peak", seconds)]
        total = weights + frozen + trainable_state + train
        line(f"{seconds:g} s crops: bf16 weights", f"{weights / GB:.2f} GB", "derived: parameters x 2")
        line(f"{seconds:g} s crops: frozen activations", f"{frozen / GB:.2f} GB", "derived: measured fp32 peak / 2")
        line(f"{seconds:g} s crops: trainable + AdamW state", f"{trainable_state / GB:.3f} GB",
             "derived: trainable x 16 B")
        line(f"{seconds:g} s crops: trainable activations", f"{train / GB:.2f} GB", "measured fp32 peak (amp off)")
        line(f"{seconds:g} s crops: total (upper bound)", f"{total / GB:.2f} GB",
             "derived: sum; the frozen activations are freed before backward")
        line(f"{seconds:g} s crops: total at batch 128 (paper profile)", f"{(weights + trainable_state + 4 * (frozen + train)) / GB:.2f} GB",
             "derived: activations x 4")
    if gpu:
        line(f"measured on the GPU, {gpu['crop_seconds']:g} s crops, batch {gpu['batch']}",
             f"{gpu['max_memory_allocated_mb'] / 1e3:.2f} GB", "measured: torch.cuda.max_memory_allocated")

    print(f"Time per epoch on one H200 ({n_train:,} crops, {math.ceil(n_train / BATCH):,} steps of {BATCH})")
    line("bf16 dense peak / fp32 peak", f"{BF16_PEAK / 1e12:.0f} / {FP32_PEAK / 1e12:.0f} TFLOP/s",
         "assumed: NVIDIA H200 SXM datasheet")
    dev_evals = math.ceil(n_train / BATCH) / paper["eval_every"]
    line("host batch assembly per epoch (the loop waits for it)", f"{math.ceil(n_train / BATCH) * m['host_s'] / 60:.1f} min",
         "derived: measured ms x steps; a cold disk adds reading")
    line("audio read per epoch (each crop reads its file)", f"{n_train * mean_s * SAMPLE_RATE * 2 / GB:.1f} GB",
         "derived: Train x mean x 32,000 B/s")
    for seconds in crops:
        frozen = n_train * m[("ssl_flops", seconds)]
        train = n_train * m[("train_flops", seconds)]
        line(f"{seconds:g} s crops: FLOPs per epoch, frozen / trainable", f"{frozen / 1e15:.1f} / {train / 1e15:.2f} PFLOP",
             "derived: measured FLOPs x Train")
        for u in UTILISATION:
            amp_off = frozen / (BF16_PEAK * u) + train / (FP32_PEAK * u)
            amp_on = (frozen + train) / (BF16_PEAK * u)
            line(f"{seconds:g} s crops, {u:.0%} of peak: amp off / amp=bf16", f"{amp_off / 60:.1f} / {amp_on / 60:.1f} min",
                 f"derived, utilisation assumed {u:.0%}")
        if gpu:
            scale = (m[("ssl_flops", seconds)] + m[("train_flops", seconds)]) / \
                (m[("ssl_flops", gpu["crop_seconds"])] + m[("train_flops", gpu["crop_seconds"])])
            epoch = math.ceil(n_train / gpu["batch"]) * gpu["seconds_per_step"] * scale
            line(f"{seconds:g} s crops, from the GPU check's step time", f"{epoch / 60:.1f} min",
                 f"derived: measured {gpu['seconds_per_step'] * 1e3:.1f} ms/step x steps x FLOP ratio {scale:.2f}")
    eval_flops = {k: v * (m[("ssl_flops", mean_s)] + m["eval_fusion_flops"]) for k, v in evaluated.items()}
    dev_time = {}
    for u in UTILISATION:
        dev_time[u] = eval_flops["Development"] / (BF16_PEAK * u)
        tests = sum(v for k, v in eval_flops.items() if k != "Development") / (BF16_PEAK * u)
        line(f"one Dev evaluation / Test1+2+3 once, {u:.0%} of peak", f"{dev_time[u] / 60:.2f} / {tests / 60:.2f} min",
             f"derived: mean-length FLOPs x utterances, {u:.0%} assumed")
    if gpu:
        rate = gpu["batch"] * m[("ssl_flops", gpu["crop_seconds"])] / gpu["frozen_seconds_per_step"]
        line("frozen forward rate on the GPU", f"{rate / 1e12:.0f} TFLOP/s", "derived from the measured forward time")
        line("one Dev evaluation at that rate", f"{eval_flops['Development'] / rate / 60:.2f} min", "derived")
    line(f"Dev evaluations per epoch (eval_every {paper['eval_every']}, batch {BATCH})", f"{dev_evals:.2f}",
         "derived: steps per epoch / eval_every")
    host = math.ceil(n_train / BATCH) * m["host_s"]
    seconds = float(paper["crop_seconds"])
    for u in UTILISATION:
        gpu_s = n_train * (m[("ssl_flops", seconds)] / (BF16_PEAK * u) + m[("train_flops", seconds)] / (FP32_PEAK * u))
        epoch = host + gpu_s + dev_evals * dev_time[u]
        line(f"epoch, {seconds:g} s crops, {u:.0%}, amp off: host + GPU + Dev", f"{epoch / 60:.1f} min",
             "derived: the lines above, host and GPU not overlapped")
        line(f"  x {paper['epochs']} epochs (paper profile)", f"{paper['epochs'] * epoch / 3600:.2f} h", "derived")
    if gpu:
        scale = (m[("ssl_flops", seconds)] + m[("train_flops", seconds)]) / \
            (m[("ssl_flops", gpu["crop_seconds"])] + m[("train_flops", gpu["crop_seconds"])])
        steps = math.ceil(n_train / gpu["batch"]) * gpu["seconds_per_step"] * scale
        rate = gpu["batch"] * m[("ssl_flops", gpu["crop_seconds"])] / gpu["frozen_seconds_per_step"]
        epoch = host + steps + dev_evals * eval_flops["Development"] / rate
        line(f"epoch, {seconds:g} s crops, from the GPU check: host + steps + Dev", f"{epoch / 60:.1f} min",
             "derived: measured step and forward times, not overlapped")
        line(f"  x {paper['epochs']} epochs (paper profile)", f"{paper['epochs'] * epoch / 3600:.2f} h", "derived")
    print("  (the paper's code ran 4 DDP processes, each over the whole Train set: 4 x these crops per epoch; "
          "sercore.fidelity, train.by_study.fusion.batch_size)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpu-results", type=Path, help="a GPU check's folder (provenance.json with an ssl entry)")
    parser.add_argument("--peak-crops", type=float, nargs="*", default=[3.0, 5.5],
                        help="crop lengths whose batch-32 peak memory is measured (each a few minutes)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    gpu = None
    if args.gpu_results:
        try:
            gpu = load_ssl_result(args.gpu_results)
        except ValueError as error:
            raise SystemExit(f"ssl_scale: {error}")
        if gpu["crop_seconds"] not in (3.0, float(section("paper", "train")["crop_seconds"])):
            raise SystemExit(f"ssl_scale: {args.gpu_results / 'provenance.json'}: crops of {gpu['crop_seconds']} s; "
                             "this estimate measures FLOPs at 3 s and the paper's crop only")
    started = time.perf_counter()
    m = measure(args)
    report(m, gpu)
    print(f"(measured in {time.perf_counter() - started:.0f} s wall)")


if __name__ == "__main__":
    main()
