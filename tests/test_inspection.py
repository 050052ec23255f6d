"""The mechanisms chapter's checks hold: each matrix rebuilds its mechanism's forward."""

from sercore import inspection


def test_every_matrix_rebuilds_forward_and_padding_is_invariant_where_promised():
    table = inspection.matrix_consistency(length=16, dim=32, heads=2, padding=4)
    assert set(table.index) == set(inspection.SEQUENCE_NAMES)
    assert (table["matrix vs forward (rel. error)"] < 1e-10).all(), table
    invariant = table.drop(index="keysparse")  # k from the padded length: the documented exception
    assert (invariant["padded vs alone (rel. error)"] < 1e-10).all(), table


def test_attention_matrices_are_square_per_head():
    matrices = inspection.attention_matrices(["softmax", "retnet"], dim=32, heads=2)
    assert matrices["softmax"].shape == (2, 48, 48)
    assert abs(matrices["retnet"][0][0, 1:]).max() == 0, "retnet is causal: no weight on future keys"
