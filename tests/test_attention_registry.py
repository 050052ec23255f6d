"""The attention registry: all eight names, build() for each importable mechanism, clear errors."""

import pytest
import torch

from sercore.attention import NAMES, build, mechanism_class

ALL = ("softmax", "retnet", "lightnet", "gsa", "fox", "kda", "keysparse", "area")


def importable(name):
    """Mechanisms written by other helpers may not exist yet: the generic checks cover those that import."""
    try:
        mechanism_class(name)
    except ImportError:
        return False
    return True


def test_names_list_all_eight_mechanisms():
    assert set(NAMES) == set(ALL) and len(NAMES) == 8


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(ValueError) as err:
        build("linformer", 32, 4)
    for name in ALL:
        assert name in str(err.value)


@pytest.mark.parametrize("name", ALL)
def test_any_importable_mechanism_rejects_an_unknown_option_by_name(name):
    if not importable(name):
        pytest.skip(f"sercore.attention.{name} does not exist yet")
    with pytest.raises(TypeError, match="no_such_option.*valid options"):
        build(name, 32, 4, no_such_option=1)


@pytest.mark.parametrize("name", ["softmax", "keysparse", "area"])
def test_unknown_option_lists_the_valid_ones(name):
    with pytest.raises(TypeError) as err:
        build(name, 32, 4, no_such_option=1)
    message = str(err.value)
    assert "no_such_option" in message
    expected = {"softmax": ["causal", "mode"],
                "keysparse": ["keep_rate", "renormalize", "k_from", "padded_queries_vote", "context_dim",
                              "mode"],
                "area": ["max_height", "max_width", "layout", "key", "value", "dropout_at_test", "mode"]}[name]
    for option in expected:
        assert option in message


@pytest.mark.parametrize("name", ["softmax", "keysparse"])
def test_sequence_mixers_build_and_run(name):
    torch.manual_seed(0)
    m = build(name, 32, 4)
    assert type(m).__name__ == {"softmax": "SoftmaxAttention", "keysparse": "KeySparseAttention"}[name]
    assert (m.dim, m.heads) == (32, 4)
    x, mask = torch.randn(2, 10, 32), torch.arange(10)[None] < torch.tensor([10, 7])[:, None]
    assert m(x, mask).shape == (2, 10, 32)
    assert m.attention_matrix(x, mask).shape == (2, 4, 10, 10)


def test_options_reach_the_constructor():
    assert build("keysparse", 32, 4, keep_rate=0.3, k_from="real").keep_rate == 0.3
    assert build("softmax", 32, 4, mode="naive").mode == "naive"
    area = build("area", 8, 2, max_height=2, layout="2d", dropout=0.0)
    assert (area.dim, area.heads, area.max_height, area.layout) == (8, 2, 2, "2d")
    assert area(torch.randn(1, 8, 3, 4)).shape == (1, 8, 3, 4)
