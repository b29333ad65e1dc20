"""The method syntax: names, hyper-parameters, lists and the ``@space`` suffix, one parser."""

from __future__ import annotations

import pytest

from mtldiag.errors import SpecError
from mtldiag.methods.syntax import MethodSpec, parse_method, parse_methods, split_wrt


@pytest.mark.parametrize(
    ("text", "name", "hparams", "wrt"),
    [
        ("mgda", "mgda", {}, None),
        ("mgda@representation", "mgda", {}, "representation"),
        ("cagrad:c=0.4,rescale=1@parameters", "cagrad", {"c": 0.4, "rescale": 1}, "parameters"),
        (" pcgrad @ representation ", "pcgrad", {}, "representation"),
    ],
)
def test_a_suffix_names_the_space_and_the_label_round_trips(text, name, hparams, wrt):
    ms = parse_method(text)
    assert (ms.name, ms.hparams, ms.wrt) == (name, hparams, wrt)
    assert parse_method(ms.label) == ms  # the label is itself valid syntax


def test_labels_keep_both_spaces_of_one_method_apart():
    specs = parse_methods("mgda,mgda@representation,cagrad:c=0.4@representation,nash_mtl")
    assert [m.label for m in specs] == [
        "mgda",
        "mgda@representation",
        "cagrad:c=0.4@representation",
        "nash_mtl",
    ]


def test_the_spec_mapping_form_takes_the_suffix_on_its_key_and_defaults_by_name():
    ms = parse_method({"cagrad@representation": {"c": 0.5}}, {"cagrad": {"rescale": 0}})
    assert ms == MethodSpec("cagrad", {"rescale": 0, "c": 0.5}, "representation")


@pytest.mark.parametrize("text", ["mgda@rep", "mgda@", "mgda@Parameters", "@representation"])
def test_a_suffix_that_is_not_a_space_is_refused_naming_both(text):
    with pytest.raises(SpecError) as err:
        split_wrt(text)
    assert text in err.value.message
    assert "not a gradient space" in err.value.message or "no method name" in err.value.message


@pytest.mark.parametrize(
    ("text", "fixed"),
    [
        ("uw@representation:lr=0.02", "uw:lr=0.02@representation"),
        ("cagrad:c=0.4@parameters,rescale=1", "cagrad:c=0.4,rescale=1@parameters"),
        ("cagrad:c=0.4@parameters:rescale=1", "cagrad:c=0.4,rescale=1@parameters"),
        ("cagrad@parameters,c=0.4", "cagrad:c=0.4@parameters"),
    ],
)
def test_a_suffix_before_hyper_parameters_is_refused_with_it_moved_last(text, fixed):
    # was: "write uw@representation or uw@parameters", which drops the hyper-parameters
    with pytest.raises(SpecError, match="not a gradient space") as err:
        parse_methods(text)
    assert err.value.hint == f"the suffix comes last: {fixed}"
    assert parse_method(fixed).wrt in ("representation", "parameters")
