"""Kernels: GSA and KDA's fused path (fla kernels) held to our PyTorch reference and to fla's own layer classes.

Forward and input gradients, with and without a padding mask; relative error (norm of the difference over
norm of the reference) <= 1e-4 in fp32 and <= 2e-2 in bf16. Needs triton + fla 0.6.0 and CUDA or Triton's CPU
interpreter (TRITON_INTERPRET=1: narrower layers, fp32 only); skipped elsewhere (tests/conftest.py).

fla's fp32 dots default to TF32 on Ampere and later, which alone is ~1e-3 off; like fla's own tests we ask
Triton for IEEE fp32 dots before any kernel compiles (set at import, so it holds for the whole session).
"""

import copy
import os

os.environ.setdefault("TRITON_F32_DEFAULT", "ieee")

import pytest  # noqa: E402
import torch  # noqa: E402
from attention_checks import KERNEL_DEVICE, KERNEL_DTYPES, on_kernel_device  # noqa: E402

from sercore.attention.gsa import GatedSlotAttention  # noqa: E402
from sercore.attention.kda import KimiDeltaAttention  # noqa: E402

pytestmark = pytest.mark.kernels

TOL = {torch.float32: 1e-4, torch.bfloat16: 2e-2}
DTYPES = KERNEL_DTYPES
WIDTH = on_kernel_device(256, 128)
# T = 48 takes fla's recurrent kernels where its layers do (GSA always, KDA at inference); 200 (interpreter: 80,
# still two 64-token chunks) the chunked ones
SHAPES = [pytest.param(3, 48, id=f"B3-T48-D{WIDTH}"),
          on_kernel_device(pytest.param(3, 200, id="B3-T200-D256"), pytest.param(3, 80, id="B3-T80-D128"))]
MECHANISMS = {
    "gsa": (GatedSlotAttention, {"hidden_size": WIDTH, "num_heads": 4}),
    # head_dim 128 as in the paper on CUDA; 64 in the interpreter
    "kda": (KimiDeltaAttention, on_kernel_device({"hidden_size": 256, "num_heads": 4},
                                                 {"hidden_size": 128, "num_heads": 2, "head_dim": 64})),
}
NAMES = list(MECHANISMS)


def rel(a, b):
    a, b = a.float(), b.float()
    return ((a - b).norm() / b.norm().clamp_min(1e-30)).item()


def ours(name, dtype, mode="fused"):
    cls, config = MECHANISMS[name]
    torch.manual_seed(0)
    return cls(**config, mode=mode).to(KERNEL_DEVICE, dtype)


def fla_twin(name, module):
    """fla's own layer with our weights (strict: same names and shapes)."""
    import fla.layers

    cls, config = MECHANISMS[name]
    twin = getattr(fla.layers, cls.__name__)(**config, layer_idx=0).to(KERNEL_DEVICE, module.o_proj.weight.dtype)
    twin.load_state_dict(module.state_dict(), strict=True)
    return twin


def make_mask(B, T):
    mask = torch.ones(B, T, dtype=torch.bool, device=KERNEL_DEVICE)
    mask[1, T - T // 3:] = False       # right padding
    mask[2, : T // 4] = False          # left padding
    return mask


def inputs(B, T, dtype):
    gen = torch.Generator(KERNEL_DEVICE).manual_seed(1)
    x = torch.randn(B, T, WIDTH, device=KERNEL_DEVICE, generator=gen).to(dtype)
    dy = torch.randn(B, T, WIDTH, device=KERNEL_DEVICE, generator=gen)
    return x, dy


def run(call, x, dy):
    """Output and input gradient of sum(call(x) * dy)."""
    x = x.detach().clone().requires_grad_(True)
    y = call(x)
    (y.float() * dy).sum().backward()
    return y.detach(), x.grad


def run_rows_alone(call, x, mask, dy):
    """Each row's real tokens run on their own (B = 1, no mask), scattered back; zeros at padding.
    This is the meaning of padding in fla, and it avoids fla's causal_conv1d backward with cu_seqlens
    and several sequences (a known hazard, notes section 7)."""
    y, gx = torch.zeros_like(x), torch.zeros_like(x)
    for b in range(x.shape[0]):
        yb, gb = run(call, x[b:b + 1, mask[b]], dy[b:b + 1, mask[b]])
        y[b, mask[b]], gx[b, mask[b]] = yb[0], gb[0]
    return y, gx


@pytest.mark.parametrize("masked", [False, True], ids=["nomask", "mask"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("B,T", SHAPES)
@pytest.mark.parametrize("name", NAMES)
def test_fused_matches_our_reference(name, B, T, dtype, masked):
    fused = ours(name, dtype)
    reference = copy.deepcopy(fused).float()   # the same (dtype-rounded) weights, computed in fp32
    reference.mode = "reference"
    x, dy = inputs(B, T, dtype)
    mask = make_mask(B, T) if masked else None
    y, gx = run(lambda z: fused(z, mask), x, dy)
    y_ref, gx_ref = run(lambda z: reference(z, mask), x.float(), dy)
    assert y.dtype == dtype and torch.isfinite(y).all() and torch.isfinite(gx).all()
    assert rel(y, y_ref) <= TOL[dtype]
    assert rel(gx, gx_ref) <= TOL[dtype]
    if masked:
        assert torch.equal(y[~mask], torch.zeros_like(y[~mask]))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", NAMES)
def test_fused_inference_matches_our_reference(name, dtype):
    # no gradients, eval, T <= 64: fla's layers switch KDA to its fused recurrent kernel here
    fused = ours(name, dtype).eval()
    reference = copy.deepcopy(fused).float()
    reference.mode = "reference"
    x, _ = inputs(3, 48, dtype)
    mask = make_mask(3, 48)
    with torch.no_grad():
        assert rel(fused(x, mask), reference(x.float(), mask)) <= TOL[dtype]


@pytest.mark.parametrize("masked", [False, True], ids=["nomask", "mask"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("B,T", SHAPES)
@pytest.mark.parametrize("name", NAMES)
def test_fused_matches_fla_layer(name, B, T, dtype, masked):
    mine = ours(name, dtype)
    twin = fla_twin(name, mine)
    x, dy = inputs(B, T, dtype)
    if not masked:
        y, gx = run(lambda z: mine(z), x, dy)
        y_fla, gx_fla = run(lambda z: twin(z)[0], x, dy)
    else:
        mask = make_mask(B, T)
        y, gx = run(lambda z: mine(z, mask), x, dy)
        y_fla, gx_fla = run_rows_alone(lambda z: twin(z)[0], x, mask, dy)
        with torch.no_grad():  # fla's own padding path (un-padding to cu_seqlens), forward only
            assert rel(mine(x, mask), twin(x, attention_mask=mask.long())[0]) <= TOL[dtype]
    assert rel(y, y_fla) <= TOL[dtype]
    assert rel(gx, gx_fla) <= TOL[dtype]


@pytest.mark.parametrize("name", NAMES)
def test_state_dicts_move_both_ways_with_fla(name):
    mine = ours(name, torch.float32, mode="reference")
    twin = fla_twin(name, mine)  # ours -> fla, strict
    torch.manual_seed(5)
    other = fla_twin(name, ours(name, torch.float32))
    for p in other.parameters():
        p.data.normal_()
    mine.load_state_dict(other.state_dict(), strict=True)  # fla -> ours, strict
    assert set(mine.state_dict()) == set(twin.state_dict())
    assert all(torch.equal(mine.state_dict()[k], other.state_dict()[k]) for k in mine.state_dict())
