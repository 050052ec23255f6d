"""Checks shared by the attention tests (tests/test_attention_*.py): error measures, padded inputs, fla's
naive references, and the properties every fla-style mixer must have (padding invariance, gradients,
fla's state-dict layout). Plain functions, imported as `from attention_checks import ...`: pytest puts
tests/ on sys.path (no __init__.py there, default prepend import mode)."""

import importlib.util
import os
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F


# ---------------------------------------------------------------- where the kernel tests run

# Tests marked `kernels` run fla's Triton kernels on CUDA, or, under TRITON_INTERPRET=1 with triton installed,
# on CPU tensors in Triton's interpreter (tests/conftest.py installs tests/triton_interpreter.py's shims then).
INTERPRETING = os.environ.get("TRITON_INTERPRET") == "1" and importlib.util.find_spec("triton") is not None
KERNEL_DEVICE = "cpu" if INTERPRETING else "cuda"
# bf16 runs on CUDA only: inside the interpreter it is not faithful (retnet's fused path, 2 x 70 tokens: relative
# error 1.4 in bf16 against 2.5e-7 in fp32), so there it would test the interpreter, not fla.
KERNEL_DTYPES = [pytest.param(torch.float32, id="fp32"),
                 pytest.param(torch.bfloat16, id="bf16", marks=pytest.mark.skipif(
                     INTERPRETING, reason="bf16 is not faithful in Triton's interpreter; CUDA only"))]


def on_kernel_device(cuda_value, interpreter_value):
    """The CUDA setting, or a smaller one in the interpreter (it is far slower): shapes, widths."""
    return interpreter_value if INTERPRETING else cuda_value


# ---------------------------------------------------------------- error measures

def max_rel_err(a, b):
    """Largest elementwise difference over the reference's largest magnitude."""
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item()


def norm_rel_err(a, b):
    """||a - b|| / ||b|| over all elements (the ratio fla's own tests use)."""
    return ((a - b).norm() / b.norm().clamp_min(1e-30)).item()


# ---------------------------------------------------------------- fla's plain-torch references

def fla_naive_path(op: str) -> Path:
    """fla/ops/<op>/naive.py of the installed flash-linear-attention (found beside torch in site-packages)."""
    return Path(F.__file__).parents[2] / "fla" / "ops" / op / "naive.py"


def load_fla_naive(op: str):
    spec = importlib.util.spec_from_file_location(f"fla_{op}_naive", fla_naive_path(op))
    naive = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(naive)  # plain torch + einops: no triton needed for this one file
    return naive


# ---------------------------------------------------------------- retnet, lightnet, fox: layer checks

def forward_and_grad(m, x, mask=None, recurrent=False):
    """Output and input gradient of sum(m(x) * w), w fixed random loss weights; recurrent: by
    m.forward_recurrent (the token-by-token oracle) instead of m's mode."""
    x = x.clone().requires_grad_(True)
    y = m.forward_recurrent(x, mask) if recurrent else m(x, mask)
    weights = torch.randn(y.shape, generator=torch.Generator().manual_seed(1), dtype=y.dtype)
    (y * weights).sum().backward()
    return y.detach(), x.grad


def padded_batch(dtype, D, T=24):
    """Three rows of width D: left padding, right padding, and a hole."""
    x = torch.randn(3, T, D, dtype=dtype, generator=torch.Generator().manual_seed(3))
    mask = torch.ones(3, T, dtype=torch.bool)
    mask[0, :7] = False                 # left padding
    mask[1, 17:] = False                # right padding
    mask[2, 5:9] = False                # a hole: fla packs the real tokens together
    return x, mask


def check_parallel_matches_recurrent(m, x, tol):
    """Outputs and input gradients of mode "reference" (chunkwise / blockwise) and the recurrent form agree."""
    m.mode = "reference"
    y_par, g_par = forward_and_grad(m, x)
    y_rec, g_rec = forward_and_grad(m, x, recurrent=True)
    assert max_rel_err(y_par, y_rec) < tol
    assert max_rel_err(g_par, g_rec) < tol


def check_causal_matrix_reproduces_forward(m, x, mask):
    """attention_matrix is [B, H, T, T], causal, zero in padded query rows, and reproduces the recurrent form;
    returns it for further checks."""
    a = m.attention_matrix(x, mask)
    B, T = mask.shape
    assert a.shape == (B, m.num_heads, T, T)
    assert torch.all(a.triu(1) == 0)
    assert torch.all(a[~mask[:, None, :, None].expand_as(a)] == 0)
    assert max_rel_err(m.forward_from_matrix(x, a, mask), m.forward_recurrent(x, mask)) < 1e-10
    return a


def check_bidirectional_matrix_and_future(m, x, mask):
    """A bidirectional mixer's matrix has weight above the diagonal and reproduces the recurrent form, and its
    first output depends on the last input; returns the matrix."""
    a = m.attention_matrix(x, mask)
    assert a.triu(1).abs().max() > 0
    assert max_rel_err(m.forward_from_matrix(x, a, mask), m.forward_recurrent(x, mask)) < 1e-10
    x = x[1:2, :10].clone().requires_grad_(True)
    m(x)[0, 0].sum().backward()
    assert x.grad[0, -1].abs().max() > 0
    return a


def check_padded_rows_equal_rows_alone(m, x, mask):
    """Zeros at padding; each row's real tokens give what that sequence gives alone."""
    y = m(x, mask)
    assert torch.all(y[~mask] == 0)
    for b in range(mask.shape[0]):
        assert max_rel_err(y[b, mask[b]], m(x[b:b + 1, mask[b]])[0]) < 1e-12


def check_gradients_finite_and_deterministic(m, x, mask):
    """Finite gradients for input and parameters, none into padding; two forwards are bitwise equal."""
    x.requires_grad_(True)
    y = m(x, mask)
    y.square().sum().backward()
    assert torch.isfinite(x.grad).all() and all(torch.isfinite(p.grad).all() for p in m.parameters())
    assert torch.all(x.grad[~mask] == 0)
    assert torch.equal(m(x, mask), m(x, mask))


# ---------------------------------------------------------------- gsa, kda: layer checks on [B, T, 32] inputs

def padding_mask(B, T):
    """Row 0 full, row 1 right-padded, row 2 left-padded with a hole (fla treats real tokens as contiguous)."""
    mask = torch.ones(B, T, dtype=torch.bool)
    mask[1, T - T // 3:] = False
    if B > 2:
        mask[2, :3] = False
        mask[2, T // 2] = False
    return mask


def check_layer_default_matches_recurrent(m, dtype, tol):
    """The default mode (chunked on CPU) and the recurrent form agree in output and input gradient."""
    x = torch.randn(3, 40, m.hidden_size, dtype=dtype, requires_grad=True)
    mask = padding_mask(3, 40)
    dy = torch.randn(3, 40, m.hidden_size, dtype=dtype)
    y_ref = m.forward_recurrent(x, mask)
    (gx_ref,) = torch.autograd.grad((y_ref * dy).sum(), x)
    y = m(x, mask)
    (gx,) = torch.autograd.grad((y * dy).sum(), x)
    assert y.dtype == dtype
    assert norm_rel_err(y, y_ref) < tol
    assert norm_rel_err(gx, gx_ref) < tol


def check_matrix_reconstructs_forward(m, heads, bidirectional):
    """[B, heads, T, T], zero in padded rows and columns, above the diagonal exactly when bidirectional,
    and forward_from_matrix reproduces the forward pass."""
    x = torch.randn(3, 24, m.hidden_size, dtype=torch.float64)
    mask = padding_mask(3, 24)
    A = m.attention_matrix(x, mask)
    assert A.shape == (3, heads, 24, 24)
    pad = ~mask
    assert A.masked_select(pad[:, None, :, None].expand_as(A)).abs().max() == 0
    assert A.masked_select(pad[:, None, None, :].expand_as(A)).abs().max() == 0
    strictly_upper = A[0].triu(1).abs().max()
    assert (strictly_upper > 0) == bidirectional
    assert norm_rel_err(m.forward_from_matrix(x, A, mask), m(x, mask)) < 1e-12


def check_padding_is_invisible(m):
    """Each padded row equals its sequence alone, padding outputs zeros and gets no gradient; returns the
    input gradient and the mask."""
    x = torch.randn(3, 36, m.hidden_size, dtype=torch.float64, requires_grad=True)
    mask = padding_mask(3, 36)
    y = m(x, mask)
    for b in range(3):
        alone = m(x[b:b + 1, mask[b]].detach())[0]
        assert norm_rel_err(y[b, mask[b]], alone) < 1e-12
    assert torch.equal(y[~mask], torch.zeros_like(y[~mask]))
    (gx,) = torch.autograd.grad(y.square().sum(), x)
    assert torch.equal(gx[~mask], torch.zeros_like(gx[~mask]))
    assert gx[mask].abs().max() > 0
    return gx, mask


def check_padding_content_is_irrelevant(m):
    x = torch.randn(3, 30, m.hidden_size, dtype=torch.float64)
    mask = padding_mask(3, 30)
    garbage = torch.where(mask[..., None], x, torch.full_like(x, 1e6))
    assert torch.equal(m(x, mask), m(garbage, mask))


def check_causal_ignores_future_and_bidirectional_uses_it(causal, bidir):
    x = torch.randn(1, 20, causal.hidden_size, dtype=torch.float64)
    x2 = x.clone()
    x2[0, 15:] += 1.0
    assert torch.equal(causal(x)[0, :15], causal(x2)[0, :15])
    assert (bidir(x)[0, :15] - bidir(x2)[0, :15]).abs().max() > 1e-6


def check_gradients_finite_for_large_inputs(m):
    x = (30 * torch.randn(2, 64, m.hidden_size)).requires_grad_()
    y = m(x, padding_mask(2, 64))
    y.sum().backward()
    assert torch.isfinite(y).all() and torch.isfinite(x.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in m.parameters())


def check_rebuilt_layer_gives_equal_outputs(build):
    """build() twice (it seeds itself) gives bitwise equal outputs on a padded batch."""
    x = torch.randn(2, 40, 32)
    mask = padding_mask(2, 40)
    assert torch.equal(build()(x, mask), build()(x, mask))


# ---------------------------------------------------------------- fla's parameter layout

def check_fla_state_dict(build, expected):
    """build()'s state_dict has exactly fla's names and shapes, and loads strictly into a second build();
    returns (first, second) for the caller's own comparison."""
    m = build()
    assert {k: tuple(v.shape) for k, v in m.state_dict().items()} == expected
    other = build()
    other.load_state_dict(m.state_dict(), strict=True)
    return m, other
