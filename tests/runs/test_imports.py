"""Resolving the user's callables: ``module:attr`` and ``file.py:attr``, and every way they fail."""

from __future__ import annotations

from pathlib import Path

import pytest

from mtldiag.errors import UserCodeError
from mtldiag.examples import synthetic
from mtldiag.runs.imports import resolve


def test_module_attr_resolves_to_the_object():
    assert resolve("mtldiag.examples.synthetic:build_model") is synthetic.build_model


def test_file_path_is_relative_to_the_spec_folder_and_sibling_imports_work(tmp_path: Path):
    (tmp_path / "helper.py").write_text("def scale():\n    return 3\n")
    (tmp_path / "user.py").write_text(
        "from helper import scale\n\nclass Box:\n    @staticmethod\n    def make():\n"
        "        return scale() * 2\n"
    )
    fn = resolve("user.py:Box.make", base_dir=tmp_path)  # nested attribute, sibling import
    assert fn() == 6


def test_a_module_next_to_the_spec_is_importable_by_name(tmp_path: Path):
    (tmp_path / "next_to_spec_mod.py").write_text("def f():\n    return 'here'\n")
    assert resolve("next_to_spec_mod:f", base_dir=tmp_path)() == "here"


@pytest.mark.parametrize(
    ("ref", "words"),
    [
        ("no_colon", "is not of the form"),
        ("mtldiag.examples.synthetic:build_modle", "Did you mean 'build_model'"),
        ("mtldiag.examples.synthetic:math", "is not callable"),
        ("not_a_package_xyz:fn", "no module named 'not_a_package_xyz'"),
        ("missing_file.py:fn", "does not exist"),
    ],
)
def test_bad_references_say_what_is_wrong(ref, words, tmp_path: Path):
    with pytest.raises(UserCodeError) as err:
        resolve(ref, base_dir=tmp_path, what="model")
    assert words in err.value.message and "model" in err.value.message


def test_a_file_that_raises_on_import_is_named_with_the_error(tmp_path: Path):
    (tmp_path / "broken.py").write_text("raise RuntimeError('boom at import')\n")
    with pytest.raises(UserCodeError) as err:
        resolve("broken.py:fn", base_dir=tmp_path)
    assert "RuntimeError: boom at import" in err.value.message
    assert "broken.py" in err.value.message
