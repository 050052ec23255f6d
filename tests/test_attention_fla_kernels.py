"""Kernel checks for retnet, lightnet and fox: our fused path (fla's kernels) against our CPU reference and
against fla's own layer classes with the weights copied. Needs flash-linear-attention 0.6.0 + triton, and CUDA
or Triton's CPU interpreter (TRITON_INTERPRET=1: smaller shapes, fp32 only); skipped elsewhere
(tests/conftest.py).

Error measure: ||a - b|| / ||b|| over all elements (fla's tests use the same ratio). Limits: 1e-4 in float32,
2e-2 in bfloat16. Triton would run float32 dots in TF32 (~1e-3 error), so float32 dots are set to IEEE
before any kernel compiles.
"""

import copy
import os

os.environ.setdefault("TRITON_F32_DEFAULT", "ieee")

import pytest  # noqa: E402
import torch  # noqa: E402
from attention_checks import KERNEL_DEVICE, KERNEL_DTYPES, on_kernel_device  # noqa: E402

from sercore.attention import build  # noqa: E402

pytestmark = pytest.mark.kernels

LIMIT = {torch.float32: 1e-4, torch.bfloat16: 2e-2}
DTYPES = KERNEL_DTYPES
T = on_kernel_device(100, 70)  # both span two of fla's 64-token chunks

# registry name, width, heads (build() semantics), options, fla layer class name; in the interpreter, narrower
MECHANISMS = on_kernel_device([
    pytest.param("retnet", 256, 4, {}, "MultiScaleRetention", id="retnet-D256-H4"),
    pytest.param("retnet", 256, 4, {"num_kv_heads": 2, "use_short_conv": True}, "MultiScaleRetention",
                 id="retnet-D256-H4-gqa-conv"),
    pytest.param("lightnet", 256, 4, {}, "LightNetAttention", id="lightnet-D256-H4"),
    pytest.param("lightnet", 256, 4, {"use_short_conv": True}, "LightNetAttention", id="lightnet-D256-H4-conv"),
    pytest.param("fox", 512, 4, {"num_heads": 16}, "ForgettingAttention", id="fox-D512-KV4-H16"),
    pytest.param("fox", 1024, 4, {}, "ForgettingAttention", id="fox-D1024-KV4-H32-paper"),
], [
    pytest.param("retnet", 128, 2, {}, "MultiScaleRetention", id="retnet-D128-H2"),
    pytest.param("retnet", 128, 2, {"num_kv_heads": 1, "use_short_conv": True}, "MultiScaleRetention",
                 id="retnet-D128-H2-gqa-conv"),
    pytest.param("lightnet", 64, 2, {}, "LightNetAttention", id="lightnet-D64-H2"),
    pytest.param("lightnet", 64, 2, {"use_short_conv": True}, "LightNetAttention", id="lightnet-D64-H2-conv"),
    pytest.param("fox", 256, 2, {"num_heads": 8}, "ForgettingAttention", id="fox-D256-KV2-H8"),
    pytest.param("fox", 1024, 4, {}, "ForgettingAttention", id="fox-D1024-KV4-H32-paper"),
])


def err(a, b):
    a, b = a.double().cpu(), b.double().cpu()
    return ((a - b).norm() / b.norm()).item()


def inputs(width, masked, T=T):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, T, width, generator=g)
    mask = None
    if masked:
        mask = torch.ones(3, T, dtype=torch.bool)
        mask[0, :T // 3] = False          # left padding
        mask[1, T - T // 3:] = False      # right padding
        mask[2, T // 5:T // 3] = False    # a hole
    w = torch.randn(3, T, width, generator=g)  # loss weights for the input gradients
    return x, mask, w


def run(fn, x, w):
    x = x.clone().requires_grad_(True)
    y = fn(x)
    (y.float() * w.to(y.device)).sum().backward()
    return y.detach().float().cpu(), x.grad.float().cpu()


def ours(name, width, heads, options, mode):
    torch.manual_seed(0)
    m = build(name, width, heads, mode=mode, **options)
    if name == "fox":
        with torch.no_grad():  # spread the forget gates so forgetting matters
            m.f_proj.bias.uniform_(-1.0, 4.0)
    return m


def rounded(m, dtype):
    """The module with its weights rounded to dtype and kept in float32: the reference for a dtype run."""
    return copy.deepcopy(m).to(dtype).float()


@pytest.mark.parametrize("bidirectional", [False, True], ids=["causal", "bidirectional"])
@pytest.mark.parametrize("masked", [False, True], ids=["dense", "padded"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name,width,heads,options,fla_class", MECHANISMS)
def test_fused_path_matches_cpu_reference(name, width, heads, options, fla_class, dtype, masked, bidirectional):
    if bidirectional and options.get("use_short_conv"):
        pytest.skip("covered by the dense causal cases")
    base = ours(name, width, heads, dict(options, bidirectional=bidirectional), mode="reference")
    reference = rounded(base, dtype)
    fused = copy.deepcopy(base).to(KERNEL_DEVICE, dtype)
    fused.mode = "fused"
    x, mask, w = inputs(width, masked)
    x = x.to(dtype).float()  # both sides see the same (rounded) input
    y_ref, g_ref = run(lambda t: reference(t, mask), x, w)
    device_mask = None if mask is None else mask.to(KERNEL_DEVICE)
    y, g = run(lambda t: fused(t.to(KERNEL_DEVICE, dtype), device_mask), x, w)
    assert err(y, y_ref) <= LIMIT[dtype]
    assert err(g, g_ref) <= LIMIT[dtype]
    if mask is not None:
        assert torch.all(y[~mask] == 0)


@pytest.mark.parametrize("masked", [False, True], ids=["dense", "padded"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name,width,heads,options,fla_class", MECHANISMS)
def test_matches_fla_layer_with_copied_weights(name, width, heads, options, fla_class, dtype, masked):
    import fla.layers

    mine = ours(name, width, heads, options, mode="fused").to(KERNEL_DEVICE, dtype)
    config = {k: getattr(mine, k) for k in ("hidden_size", "num_heads")}
    if name == "fox":
        config["num_kv_heads"] = mine.num_kv_heads
    theirs = getattr(fla.layers, fla_class)(**config, **{k: v for k, v in options.items() if k != "num_heads"})
    theirs = theirs.to(KERNEL_DEVICE, dtype)
    theirs.load_state_dict(mine.state_dict(), strict=True)
    # and back: fla's own state_dict loads into ours
    ours(name, width, heads, options, mode="fused").load_state_dict(theirs.state_dict(), strict=True)

    x, mask, w = inputs(width, masked)
    x = x.to(KERNEL_DEVICE, dtype)
    device_mask = None if mask is None else mask.to(KERNEL_DEVICE)
    y_mine, g_mine = run(lambda t: mine(t, device_mask), x, w)
    fla_mask = None if mask is None else device_mask.long()
    y_fla, g_fla = run(lambda t: theirs(t, attention_mask=fla_mask)[0], x, w)
    assert err(y_mine, y_fla) <= LIMIT[dtype]
    assert err(g_mine, g_fla) <= LIMIT[dtype]
