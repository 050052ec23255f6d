"""`mode`, the one switch for which code runs, on every mixer in sercore.attention (sercore.attention.base).

On the CPU: "auto" runs what "reference" runs (softmax: its "sdpa", and key-sparse with gradients on:
"dense", both equal up to rounding); an unknown mode fails naming the class and the valid values;
"fused" without CUDA (and without TRITON_INTERPRET=1) is an error; the extra values (softmax "naive" and
"sdpa", key-sparse "memory-linear" and "dense") compute what "reference" computes, with padding and gradients.
"""

import pytest
import torch

from sercore import attention
from sercore.attention import NAMES, build, mechanism_class, modes

COMMON = ("auto", "reference", "fused")
EXTRA = {"softmax": ("naive", "sdpa"), "keysparse": ("memory-linear", "dense")}


def small(name, **options):
    """A small fp64 instance of mechanism `name` (area without its test-time dropout, so it is deterministic)."""
    torch.manual_seed(0)
    if name == "area":
        options = {"dropout": 0.0, **options}
    if name == "fox":  # fox's default is 32 query heads over `heads` kv heads: too many for width 16
        options = {"num_heads": 2, **options}
    return build(name, 16, 2, **options).double()


def inputs(name):
    """(x, mask) for `name`: a padded [3, 12, 16] batch, or a [2, 16, 3, 5] feature map (area has no mask)."""
    g = torch.Generator().manual_seed(1)
    if name == "area":
        return torch.randn(2, 16, 3, 5, dtype=torch.float64, generator=g), None
    x = torch.randn(3, 12, 16, dtype=torch.float64, generator=g)
    mask = torch.arange(12)[None] < torch.tensor([12, 7, 4])[:, None]
    mask[2, :2] = False  # left padding too
    return x, mask


def call(m, x, mask):
    return m(x) if mask is None else m(x, mask)


def output_and_grads(m, x, mask):
    """Output, input gradient and parameter gradients of sum(y * w) for fixed random w."""
    x = x.clone().requires_grad_(True)
    y = call(m, x, mask)
    w = torch.randn(y.shape, dtype=y.dtype, generator=torch.Generator().manual_seed(2))
    grads = torch.autograd.grad((y * w).sum(), [x, *m.parameters()])
    return y.detach(), grads


@pytest.mark.parametrize("name", NAMES)
def test_every_class_lists_its_modes_and_modes_reads_them(name):
    cls = mechanism_class(name)
    assert isinstance(cls.MODES, tuple)
    assert cls.MODES == COMMON + EXTRA.get(name, ()), "the contract: the three common values, then the class's own"
    assert modes(name) == cls.MODES
    for value in cls.MODES:
        assert f'"{value}"' in cls.__doc__, f"{cls.__name__}'s docstring does not say what mode {value!r} runs"


@pytest.mark.parametrize("name", [n for n in NAMES if n != "softmax"])
def test_auto_runs_the_reference_on_the_cpu(name):
    reference, auto = small(name, mode="reference"), small(name, mode="auto")
    x, mask = inputs(name)
    trains = "dense" if name == "keysparse" else "reference"  # key-sparse training takes its exact faster form
    assert auto.path(x) == trains and reference.path(x) == "reference"
    with torch.no_grad():
        assert auto.path(x) == "reference"
    (y_ref, g_ref), (y_auto, g_auto) = output_and_grads(reference, x, mask), output_and_grads(auto, x, mask)
    same = torch.equal if trains == "reference" else lambda a, b: torch.allclose(a, b, atol=1e-12)
    assert same(y_ref, y_auto)
    assert all(same(a, b) for a, b in zip(g_ref, g_auto))


@pytest.mark.parametrize("name", NAMES)
def test_an_unknown_mode_names_the_class_and_the_valid_values(name):
    cls = mechanism_class(name)
    valid = ", ".join(cls.MODES)
    with pytest.raises(ValueError, match=f"^{cls.__name__}: unknown mode 'flash'; valid modes: {valid}$"):
        small(name, mode="flash")
    m = small(name)
    with pytest.raises(ValueError, match=f"{cls.__name__}: unknown mode 'chunk'"):
        m.mode = "chunk"  # checked when set later too (the kernel checks switch instances so)
    assert m.mode == "auto"


@pytest.mark.parametrize("name", NAMES)
def test_fused_on_the_cpu_without_the_interpreter_is_an_error(name, monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    m = small(name, mode="fused")
    x, mask = inputs(name)
    with pytest.raises(RuntimeError, match=f"{type(m).__name__}: mode='fused' needs a CUDA tensor"):
        call(m, x, mask)


def test_no_mixer_takes_another_mixers_value_or_the_old_form_names():
    """"naive" is softmax's, "memory-linear" and "dense" key-sparse's: elsewhere they are unknown values; the old
    per-call forms ("parallel", "recurrent") are not modes anywhere (forward_recurrent is the oracle's own method)."""
    for name in NAMES:
        for value in ("naive", "memory-linear", "dense", "recurrent", "parallel"):
            if value not in EXTRA.get(name, ()):
                with pytest.raises(ValueError, match="unknown mode"):
                    small(name, mode=value)


def spy(monkeypatch, module, function):
    """Replace module.function by a wrapper that counts its calls; returns the list of calls."""
    calls, original = [], getattr(module, function)
    monkeypatch.setattr(module, function, lambda *a, **k: calls.append(1) or original(*a, **k))
    return calls


@pytest.mark.parametrize("causal", [False, True], ids=["bidir", "causal"])
def test_softmax_naive_equals_reference(causal, monkeypatch):
    reference, naive = small("softmax", mode="reference", causal=causal), small("softmax", mode="naive",
                                                                                  causal=causal)
    x, mask = inputs("softmax")
    calls = spy(monkeypatch, attention.softmax, "naive_attention")
    y_ref, g_ref = output_and_grads(reference, x, mask)
    assert not calls, "the reference ran the naive core"
    y_naive, g_naive = output_and_grads(naive, x, mask)
    assert calls and naive.path(x) == "naive"
    assert torch.allclose(y_naive, y_ref, atol=1e-12)
    assert all(torch.allclose(a, b, atol=1e-11) for a, b in zip(g_naive, g_ref))
    assert (y_naive[1, 7:] == 0).all()


@pytest.mark.parametrize("masked", [True, False], ids=["padded", "no-mask"])
@pytest.mark.parametrize("causal", [False, True], ids=["bidir", "causal"])
def test_softmax_sdpa_and_auto_on_the_cpu_equal_reference(causal, masked, monkeypatch):
    """softmax "auto" on the CPU runs torch's SDPA kernel ("sdpa"): the reference's function in fp64, with
    gradients, padding, and the is_causal call when there is no mask."""
    x, mask = inputs("softmax")
    mask = mask if masked else None
    reference = small("softmax", mode="reference", causal=causal)
    calls = spy(monkeypatch, attention.softmax, "sdpa_attention")
    y_ref, g_ref = output_and_grads(reference, x, mask)
    assert not calls, "the reference ran SDPA"
    for mode in ("sdpa", "auto"):
        m = small("softmax", mode=mode, causal=causal)
        assert m.path(x) == "sdpa"
        y, g = output_and_grads(m, x, mask)
        assert calls, f"{mode} did not run SDPA"
        calls.clear()
        assert torch.allclose(y, y_ref, atol=1e-12)
        assert all(torch.allclose(a, b, atol=1e-11) for a, b in zip(g, g_ref))
        if masked:
            assert (y[1, 7:] == 0).all()


def test_softmax_sdpa_long_no_grad_evaluation_is_query_chunked(monkeypatch):
    """Without gradients and past QUERY_CHUNK tokens, "sdpa" runs block by block and still equals the reference."""
    monkeypatch.setattr(attention.softmax, "QUERY_CHUNK", 5)
    x, mask = inputs("softmax")
    with torch.no_grad():
        y_ref = small("softmax", mode="reference", causal=True)(x, mask)
        calls = spy(monkeypatch, attention.softmax, "query_chunked")
        y = small("softmax", mode="sdpa", causal=True)(x, mask)
    assert calls and torch.allclose(y, y_ref, atol=1e-12)


@pytest.mark.parametrize("form", ["memory-linear", "dense"])
@pytest.mark.parametrize("renormalize", [False, True], ids=["raw", "renorm"])
def test_keysparse_memory_linear_equals_reference_with_padding_and_grad(renormalize, form, monkeypatch):
    reference = small("keysparse", mode="reference", keep_rate=0.4, renormalize=renormalize)
    linear = small("keysparse", mode=form, keep_rate=0.4, renormalize=renormalize, block_size=5)
    x, mask = inputs("keysparse")
    calls = spy(monkeypatch, attention.keysparse, form.replace("-", "_") + "_keysparse")
    y_ref, g_ref = output_and_grads(reference, x, mask)
    assert not calls, "the reference ran the memory-linear form"
    y_lin, g_lin = output_and_grads(linear, x, mask)
    assert calls and linear.path(x) == form
    assert torch.allclose(y_lin, y_ref, atol=1e-12)
    assert all(torch.allclose(a, b, atol=1e-11) for a, b in zip(g_lin, g_ref))
    assert (y_lin[1, 7:] == 0).all() and (y_lin[2, :2] == 0).all()


def test_keysparse_auto_takes_memory_linear_for_long_no_grad_cpu_inputs_only():
    m = small("keysparse")
    long = torch.zeros(1, attention.keysparse.LONG_QUERIES + 1, 16, dtype=torch.float64)
    assert m.path(long) == "dense", "with gradients on (training): the dense form"
    with torch.no_grad():
        assert m.path(long) == "memory-linear"
        assert m.path(long[:, :8]) == "reference"
    m.mode = "reference"
    with torch.no_grad():
        assert m.path(long) == "reference", "an explicit reference stays the reference"


def test_modes_of_an_unknown_mechanism_lists_the_names():
    with pytest.raises(ValueError, match="valid names: softmax, retnet"):
        modes("flash")
