"""Area attention against brute-force enumeration of every rectangle; the 1-D (public code) layout."""

import math

import pytest
import torch

from sercore.attention.area import AreaAttention, area_attention, area_list


def brute_force(fmap, max_height, max_width, key="mean", value="sum", scaled=False):
    """One map [c, H, W]: enumerate every rectangle with loops. Returns (output [c, H, W], weights, areas)."""
    c, height, width = fmap.shape
    areas, keys, values = [], [], []
    for h in range(1, max_height + 1):
        for w in range(1, max_width + 1):
            for top in range(height - h + 1):
                for left in range(width - w + 1):
                    cells = fmap[:, top:top + h, left:left + w].reshape(c, -1)
                    areas.append((top, left, h, w))
                    keys.append(cells.max(1).values if key == "max" else cells.mean(1))
                    values.append({"sum": cells.sum(1), "mean": cells.mean(1), "max": cells.max(1).values}[value])
    keys, values = torch.stack(keys), torch.stack(values)
    out = torch.zeros_like(fmap)
    weights = []
    for i in range(height):
        for j in range(width):
            logits = keys @ fmap[:, i, j] / (math.sqrt(c) if scaled else 1.0)
            p = torch.softmax(logits, dim=0)
            weights.append(p)
            out[:, i, j] = p @ values
    return out, torch.stack(weights), areas


MAPS = [(1, 1, 1, 1), (2, 4, 5, 6), (1, 3, 4, 4)]
SIZES = [(1, 1), (2, 3), (3, 3), (4, 2)]


@pytest.mark.parametrize("key,value", [("mean", "sum"), ("mean", "mean"), ("max", "max"), ("max", "sum"),
                                       ("mean", "max")])
@pytest.mark.parametrize("max_height,max_width", SIZES, ids=[f"A{h}x{w}" for h, w in SIZES])
@pytest.mark.parametrize("n,c,h,w", MAPS, ids=[f"N{n}-C{c}-H{h}-W{w}" for n, c, h, w in MAPS])
def test_2d_area_attention_matches_brute_force(n, c, h, w, max_height, max_width, key, value):
    x = torch.randn(n, c, h, w, dtype=torch.float64, generator=torch.Generator().manual_seed(c * h + w))
    out, weights = area_attention(x, max_height, max_width, key, value, scaled=(key == "max"))
    for i in range(n):
        want, want_w, areas = brute_force(x[i], min(max_height, h), min(max_width, w), key, value,
                                          scaled=(key == "max"))
        assert areas == area_list(h, w, max_height, max_width)
        assert torch.allclose(weights[i], want_w, atol=1e-12)
        assert torch.allclose(out[i], want, atol=1e-10)


def test_one_by_one_areas_are_plain_attention_over_cells():
    x = torch.randn(2, 6, 4, 5, dtype=torch.float64)
    m = AreaAttention(6, max_height=1, max_width=1, layout="2d", dropout=0.0)
    cells = x.flatten(2).transpose(1, 2)  # [B, 20, 6]
    plain = torch.softmax(cells @ cells.transpose(1, 2), dim=-1) @ cells
    assert torch.allclose(m(x), plain.transpose(1, 2).reshape(2, 6, 4, 5), atol=1e-12)


def test_module_2d_equals_brute_force_with_heads_and_scaling():
    x = torch.randn(2, 8, 3, 4, dtype=torch.float64)
    m = AreaAttention(8, heads=2, max_height=2, max_width=3, layout="2d", scaled=True, dropout=0.0)
    out, weights = m(x, return_weights=True)
    assert out.shape == x.shape and weights.shape == (2, 2, 12, len(m.areas(3, 4)))
    for b in range(2):
        for g in range(2):
            want, want_w, _ = brute_force(x[b, 4 * g:4 * g + 4], 2, 3, scaled=True)
            assert torch.allclose(out[b, 4 * g:4 * g + 4], want, atol=1e-10)
            assert torch.allclose(weights[b, g], want_w, atol=1e-12)


def test_freq_heads_1d_layout_is_rowwise_and_ignores_height():
    x = torch.randn(2, 5, 4, 7, dtype=torch.float64)
    outs = [AreaAttention(5, max_height=mh, max_width=3, dropout=0.0)(x) for mh in (1, 2, 4)]
    assert torch.allclose(outs[0], outs[1]) and torch.allclose(outs[0], outs[2])
    m = AreaAttention(5, max_height=3, max_width=3, dropout=0.0)
    weights = m.attention_weights(x)
    assert weights.shape == (2, 1, 4, 7, len(m.areas(4, 7))) and len(m.areas(4, 7)) == 7 + 6 + 5
    for b in range(2):
        for row in range(4):
            want, want_w, _ = brute_force(x[b, :, row:row + 1], 1, 3)
            assert torch.allclose(outs[0][b, :, row], want[:, 0], atol=1e-10)
            assert torch.allclose(weights[b, 0, row], want_w, atol=1e-12)
    # 2-D areas do depend on height, so the layouts really differ.
    two_d = [AreaAttention(5, max_height=mh, max_width=3, layout="2d", dropout=0.0)(x) for mh in (1, 2)]
    assert not torch.allclose(two_d[0], two_d[1])


def test_dropout_defaults_follow_the_public_code():
    torch.manual_seed(0)
    x = torch.randn(1, 4, 3, 6)
    m = AreaAttention(4).eval()
    assert (m.dropout, m.dropout_at_test, m.layout) == (0.5, True, "freq-heads-1d")
    assert not torch.allclose(m(x), m(x))  # dropout still on in eval mode, as the code
    m.dropout_at_test = False
    assert torch.equal(m(x), m(x))


def test_sample_keys_are_noisy_only_when_stochastic_and_mean_otherwise():
    torch.manual_seed(0)
    x = torch.randn(1, 4, 3, 6, dtype=torch.float64)
    calm = AreaAttention(4, key="sample", layout="2d", dropout=0.0, dropout_at_test=False).eval()
    mean = AreaAttention(4, key="mean", layout="2d", dropout=0.0, dropout_at_test=False).eval()
    assert torch.equal(calm(x), mean(x))
    calm.train()
    assert not torch.allclose(calm(x), mean(x))


def test_bad_arguments_fail_clearly():
    for kwargs, match in [(dict(layout="1d"), "layout"), (dict(key="sum"), "key"),
                          (dict(value="sample"), "no 'sample' value mode"), (dict(max_width=0), "max_width"),
                          (dict(heads=3), "divisible"), (dict(dropout=1.0), "dropout")]:
        with pytest.raises(ValueError, match=match):
            AreaAttention(4, **kwargs)
    with pytest.raises(ValueError, match=r"\[B, C=4, H, W\]"):
        AreaAttention(4)(torch.randn(2, 3, 5))
