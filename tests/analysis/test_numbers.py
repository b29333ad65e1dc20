"""Numbers for people: 3 significant digits, no e-notation, booleans as words."""

import pytest

from mtldiag.analysis.numbers import interval, sig, yes_no


@pytest.mark.parametrize(
    "x, text",
    [
        (3512.4, "3512"),  # a step time in ms, not 3.51e+03
        (2.236, "2.24"),
        (0.0123, "0.0123"),
        (0.003, "0.00300"),
        (-5.76, "-5.76"),
        (9.996, "10.0"),  # rounding up adds a digit before the point
        (0.0, "0"),
        (float("nan"), "–"),
        (None, "–"),
        (True, "–"),
    ],
)
def test_sig(x, text):
    assert sig(x) == text


def test_sig_sign_interval_and_words():
    assert sig(4.034, sign=True) == "+4.03"
    assert interval([-66.0186, 55.1986]) == "-66.0 to 55.2"
    assert interval(None) == "–"
    assert (yes_no(True), yes_no(False), yes_no(None)) == ("yes", "no", "–")


def test_plain_is_g_without_e_notation():
    from mtldiag.analysis.numbers import plain

    assert plain(3512.4, 3) == "3512"  # a step time: not 3.51e+03
    assert plain(0.1234, 3) == "0.123" and plain(2.0, 3) == "2"
    assert plain(1e-5, 3) == "0.0000100"
