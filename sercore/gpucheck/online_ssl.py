"""The online-SSL step of the GPU check: the main paper's training step at its real size, timed on one GPU.

What one step is (sercore.train.online, the protocol of AttentionAlternatives' scripts/model.py): a batch of
`batch` waveform crops of `crop_seconds` goes through the frozen SSL model (sercore.features.ssl.SSLEncoder.states:
inference_mode, bf16 on CUDA) and its hidden states [B, L + 1, T, D] through the fusion model
(sercore.models.fusion, the paper's defaults: 1024 wide, softmax, 4 heads, 8 classes) with `text_tokens` random
BERT-large-sized text states per crop (the frozen text encoder's states are cached, not run in the step);
cross-entropy, backward, AdamW step. The SSL model is WavLM-Large built from its config alone (WAVLM_LARGE: 24
layers, hidden 1024, 16 heads, FFN 4096, the 7-layer conv front end) with random weights: nothing is
downloaded or written but config.json, and a step's cost does not depend on the weights' values.

Timed (CUDA events, after `warmup` untimed steps, while the step's share of the budget lasts, at most `steps`):
the whole training step, and the frozen forward alone; torch.cuda.max_memory_allocated over the timed steps.
The result is provenance.json["ssl"] (keys in sercore.gpucheck's docstring); benchmarks/ssl_scale.py
--gpu-results reads it for the MSP-Podcast estimate.

On the CPU (--rehearse, or no CUDA) the same code runs a tiny config (TINY: hidden 32, 2 layers, the same
conv kernels and strides) on a small batch, in fp32, so the rehearsal stays within seconds; its result says
"rehearsal": true and no estimate takes it for a GPU measurement.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import torch

# WavLM-Large (microsoft/wavlm-large's config.json sizes); conv_bias off as released (7 x 512 weights either way)
WAVLM_LARGE = dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
                   conv_dim=(512,) * 7, conv_kernel=(10, 3, 3, 3, 3, 2, 2), conv_stride=(5, 2, 2, 2, 2, 2, 2),
                   conv_bias=False, feat_extract_norm="layer", do_stable_layer_norm=True,
                   num_conv_pos_embeddings=128, num_conv_pos_embedding_groups=16, num_buckets=320,
                   max_bucket_distance=800)
TINY = {**WAVLM_LARGE, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64,
        "conv_dim": (32,) * 7, "num_conv_pos_embeddings": 16, "num_conv_pos_embedding_groups": 4, "num_buckets": 16,
        "max_bucket_distance": 64}
CONFIGS = {"wavlm-large": WAVLM_LARGE, "tiny": TINY}
# the paper's fusion model is FusionModel's defaults; the tiny one only shrinks the widths
FUSION = {"wavlm-large": {}, "tiny": {"width": 16, "heads": 2, "head_width": 16, "text_dim": 8}}
FULL = {"config": "wavlm-large", "batch": 32, "crop_seconds": 3.0, "text_tokens": 32, "warmup": 2, "steps": 20}
REHEARSAL = {"config": "tiny", "batch": 4, "crop_seconds": 1.0, "text_tokens": 4, "warmup": 1, "steps": 2}
SAMPLE_RATE = 16000
MEASURED = ("seconds_per_step", "frozen_seconds_per_step", "max_memory_allocated_mb")  # what an estimate reads


def frontend(config: str, device: torch.device, folder: Path, fusion: dict | None = None):
    """(OnlineSSLModel, encoder) on `device`: WavLM of CONFIGS[config] with random weights (seed 0) behind
    sercore's SSLEncoder (config.json written to `folder`), feeding the fusion model (FUSION[config])."""
    from sercore.features.local_model import offline_transformers
    from sercore.features.ssl import SSLEncoder
    from sercore.models import build_model
    from sercore.models.online import OnlineSSLModel

    transformers = offline_transformers()
    wavlm = transformers.WavLMConfig(**CONFIGS[config])
    wavlm.save_pretrained(folder)  # config.json only: SSLEncoder reads the frame arithmetic from it
    torch.manual_seed(0)
    with torch.device(device):  # initialised where it runs (WavLM-Large's init takes ~10 s on one CPU core)
        model = transformers.WavLMModel(wavlm)
    encoder = SSLEncoder(folder, device=str(device), precision="bfloat16" if device.type == "cuda" else "float32")
    encoder.use_model(model)
    options = {**FUSION[config], **(fusion or {})}
    net = build_model("fusion", speech="ssl", speech_dim=encoder.hidden_size, ssl_layers=encoder.n_states(),
                      **options)
    return OnlineSSLModel(net, encoder).to(device), encoder


def batch_of(sizes: dict, text_dim: int, n_classes: int, device: torch.device, seed: int = 0) -> dict:
    """A training batch as sercore.train.online.WaveCropItems makes it: normalised crops (noise here), their mask,
    text states and labels."""
    generator = torch.Generator().manual_seed(seed)
    samples = int(round(sizes["crop_seconds"] * SAMPLE_RATE))
    b, n = sizes["batch"], sizes["text_tokens"]
    batch = {"speech": torch.randn(b, samples, generator=generator),
             "speech_mask": torch.ones(b, samples, dtype=torch.bool),
             "text": torch.randn(b, n, text_dim, generator=generator), "text_mask": torch.ones(b, n, dtype=torch.bool),
             "label": torch.randint(0, n_classes, (b,), generator=generator)}
    return {k: v.to(device) for k, v in batch.items()}


def run_ssl_step(budget, device: torch.device, sizes: dict | None = None, share_s: float = math.inf,
                 reserve: float = 10.0) -> dict:
    """Time the online training step (module docstring) while `share_s` seconds of this step and the budget's
    `reserve` last; returns the result dict (provenance.json["ssl"]). An error, OOM included, is recorded in
    "error" with null timings, never raised: the check's other steps still run. What was not measured is None
    (null in the JSON file, which NaN would make invalid)."""
    from sercore.bench import band, timings

    rehearsal = device.type != "cuda"
    sizes = dict(sizes or (REHEARSAL if rehearsal else FULL))
    start = budget.used()
    left = lambda: min(share_s - (budget.used() - start), budget.left() - reserve)  # noqa: E731
    result = {"rehearsal": rehearsal, "device": device.type, **sizes, "precision": "bfloat16" if not rehearsal
              else "float32", "steps_timed": 0, "seconds_per_step": math.nan, "p20_s": math.nan, "p80_s": math.nan,
              "frozen_seconds_per_step": math.nan, "crops_per_second": math.nan, "max_memory_allocated_mb": math.nan,
              "weights_mb": math.nan, "ssl_parameters": 0, "trainable_parameters": 0, "error": ""}
    if left() <= 0:
        result["error"] = budget.skip("ssl")
        return _nulls(result)
    try:
        with tempfile.TemporaryDirectory() as folder:
            net, encoder = frontend(sizes["config"], device, Path(folder))
        fusion = net.model
        result["ssl_parameters"] = sum(p.numel() for p in encoder.model.parameters())
        result["trainable_parameters"] = sum(p.numel() for p in net.parameters() if p.requires_grad)
        batch = batch_of(sizes, fusion.text_dim, fusion.classifier.layers[-1].out_features, device)
        optimizer = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=1e-4, weight_decay=0.01)
        net.train()

        def train_step():
            optimizer.zero_grad(set_to_none=True)
            net.loss(batch, net(batch)).backward()
            optimizer.step()

        def frozen_forward():
            encoder.states(batch["speech"], batch["speech_mask"].sum(dim=1))

        for _ in range(sizes["warmup"]):  # cuDNN picks its conv algorithms, AdamW makes its state
            train_step()
        if device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            result["weights_mb"] = torch.cuda.memory_allocated() / 1e6  # weights, AdamW state, the batch
        step_ms = []
        while len(step_ms) < sizes["steps"] and left() > 0:
            step_ms += timings(train_step, device, 1, warmup=0)
        if device.type == "cuda":
            result["max_memory_allocated_mb"] = torch.cuda.max_memory_allocated() / 1e6
        frozen_ms = timings(frozen_forward, device, max(1, min(len(step_ms), 5)), warmup=1) if left() > 0 else []
        timed = band(step_ms)
        result.update(steps_timed=len(step_ms), seconds_per_step=timed["median_ms"] / 1e3,
                      p20_s=timed["p20_ms"] / 1e3, p80_s=timed["p80_ms"] / 1e3,
                      frozen_seconds_per_step=band(frozen_ms)["median_ms"] / 1e3,
                      crops_per_second=sizes["batch"] / (timed["median_ms"] / 1e3))
        if not step_ms:
            result["error"] = budget.skip("ssl (timed steps)")
    except torch.OutOfMemoryError as error:
        result["error"] = f"OOM: {str(error).splitlines()[0][:300]}"
    except Exception as error:  # one step's failure is a record, not a crash (module docstring)
        result["error"] = f"{type(error).__name__}: {str(error).splitlines()[0][:300] if str(error) else ''}"
    finally:
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return _nulls(result)


def _nulls(result: dict) -> dict:
    return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in result.items()}


def load_ssl_result(directory) -> dict:
    """provenance.json["ssl"] of a GPU check's folder, measured on a GPU; ValueError (one line, naming the file)
    when the folder has none, or holds a CPU rehearsal's or a failed step's result."""
    import json

    path = Path(directory) / "provenance.json"
    if not path.is_file():
        raise ValueError(f"{path}: no such file (expected the folder a GPU check wrote, e.g. book/gpu)")
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:  # a copy cut short, or not the check's file
        raise ValueError(f"{path}: not a JSON file the GPU check wrote ({error})") from None
    result = record.get("ssl") if isinstance(record, dict) else None
    if not isinstance(result, dict):
        raise ValueError(f"{path}: no online-SSL result (run the check with its ssl step)")
    if result.get("rehearsal") or result.get("device") != "cuda":
        raise ValueError(f"{path}: the online-SSL result is a CPU rehearsal ({result.get('config')} config), "
                         "not a GPU measurement")
    if result.get("error") or not result.get("steps_timed"):
        raise ValueError(f"{path}: the online-SSL step timed nothing: {result.get('error') or 'no steps'}")
    missing = [k for k in MEASURED if not isinstance(result.get(k), (int, float))]
    if missing:
        raise ValueError(f"{path}: the online-SSL result lacks {', '.join(missing)}")
    return result
