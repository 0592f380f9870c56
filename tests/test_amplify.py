import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import svag

PAPER_TABLE = {  # P1 §4 / PAPER.md §2
    2: (1.366025, -0.366025),
    4: (1.822876, -0.822876),
    8: (2.436492, -1.436492),
    16: (3.283882, -2.283882),
    32: (4.468627, -3.468627),
}


@pytest.mark.parametrize("l", sorted(PAPER_TABLE))
def test_coefficients_match_paper_table(l):
    a1, a2 = svag.coefficients(l)
    assert a1 == pytest.approx(PAPER_TABLE[l][0], abs=1e-6)
    assert a2 == pytest.approx(PAPER_TABLE[l][1], abs=1e-6)


def test_l_equal_one_is_sgd():
    assert svag.coefficients(1) == (1.0, 0.0)


@given(st.floats(min_value=1.0, max_value=1e6, allow_nan=False))
def test_coefficients_sum_and_square_sum(l):
    a1, a2 = svag.coefficients(l)
    assert math.isclose(a1 + a2, 1.0, rel_tol=0, abs_tol=4 * math.ulp(max(1.0, abs(a1))))
    assert math.isclose(a1 * a1 + a2 * a2, l, rel_tol=1e-13)


@pytest.mark.parametrize("bad", [0.5, 0.0, -3, float("nan"), float("inf"), "2", True, None])
def test_bad_l_raises_naming_value(bad):
    with pytest.raises(ValueError, match=r"l must be .*got"):
        svag.coefficients(bad)


def test_amplified_loss_l1_returns_loss1_and_allows_none():
    loss = torch.tensor(3.0)
    assert svag.amplified_loss(loss, None, 1) is loss


def test_amplified_loss_combines():
    a1, a2 = svag.coefficients(4)
    out = svag.amplified_loss(torch.tensor(2.0), torch.tensor(5.0), 4)
    assert out.item() == pytest.approx(a1 * 2 + a2 * 5, abs=1e-14)


def test_amplified_loss_needs_loss2():
    with pytest.raises(ValueError, match="needs loss2"):
        svag.amplified_loss(torch.tensor(1.0), None, 2)
