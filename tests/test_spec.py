from pathlib import Path

import pytest

from mtldiag.errors import SpecError
from mtldiag.spec import load_spec, parse_method, parse_methods, parse_spec

from .conftest import SYNTHETIC, write_spec


def test_valid_spec_parses_with_defaults(synthetic_spec: Path):
    spec = load_spec(synthetic_spec)
    assert spec.task_names == ["a", "b", "c"]
    assert spec.shared == "auto"
    assert spec.profile.steps == 6 and spec.profile.method.name == "ew"
    assert spec.compare.seeds == (0,)


def test_missing_file_names_it(tmp_path: Path):
    with pytest.raises(SpecError, match="does not exist"):
        load_spec(tmp_path / "nope.yaml")


def test_default_spec_missing_says_how_to_start(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SpecError) as err:
        load_spec(None)
    assert "mtldiag.yaml" in err.value.message and "sample_configs" in err.value.hint


def test_invalid_yaml_reports_line(tmp_path: Path):
    p = tmp_path / "bad.yaml"
    p.write_text("name: x\nmodel:\n  factory: a:b\n   kwargs: {\n")
    with pytest.raises(SpecError, match=r"invalid YAML at line \d+"):
        load_spec(p)


def test_misspelled_key_suggests_closest():
    data = {**SYNTHETIC, "optimiser": {"name": "sgd"}}
    with pytest.raises(SpecError) as err:
        parse_spec(data, "s.yaml")
    assert "'optimiser'" in err.value.message and "Did you mean 'optimizer'?" in err.value.message


def test_misspelled_task_key_and_unknown_loss():
    data = {**SYNTHETIC, "tasks": {"a": {"outptu": "a", "loss": "mse"}}}
    with pytest.raises(SpecError, match="Did you mean 'output'"):
        parse_spec(data)
    data = {**SYNTHETIC, "tasks": {"a": {"loss": "cross_entropi"}}}
    with pytest.raises(SpecError, match="Did you mean 'cross_entropy'"):
        parse_spec(data)


def test_seeds_must_be_whole_numbers():
    with pytest.raises(SpecError, match="compare.seeds"):
        parse_spec({**SYNTHETIC, "compare": {"seeds": []}})
    with pytest.raises(SpecError, match="compare.seeds"):
        parse_spec({**SYNTHETIC, "compare": {"seeds": ["x"]}})


def test_method_strings_and_mappings():
    assert parse_method("cagrad:c=0.4,rescale=1").hparams == {"c": 0.4, "rescale": 1}
    assert parse_method({"gradnorm": {"alpha": 1.5}}).hparams == {"alpha": 1.5}
    ms = parse_methods("ew,cagrad:c=0.4,rescale=2,pcgrad")
    assert [m.name for m in ms] == ["ew", "cagrad", "pcgrad"]
    assert ms[1].hparams == {"c": 0.4, "rescale": 2}
    with pytest.raises(SpecError, match="name=value"):
        parse_method("cagrad:c")


def test_overrides_merge_nested(tmp_path: Path):
    spec = load_spec(write_spec(tmp_path, SYNTHETIC), overrides={"profile": {"steps": 3}})
    assert spec.profile.steps == 3 and spec.profile.every == 1


def test_label_of_dict_hyperparameters_is_compact():
    ms = parse_method({"fixed": {"weights": {"a": 0.1, "b": 1}}})
    assert ms.label == "fixed:weights={a:0.1,b:1}"
    assert parse_method("cagrad:c=0.4").label == "cagrad:c=0.4"


def test_exponent_numbers_in_method_strings_are_numbers():
    assert parse_method("cagrad:c=1e-1").hparams["c"] == 0.1
    assert parse_method("pcgrad:reduction=mean").hparams["reduction"] == "mean"


def test_method_hyperparameters_reach_every_alias_of_the_method():
    spec = parse_spec({**SYNTHETIC, "methods": {"uncertainty": {"variant": "log1p"}}})
    assert parse_method("uw", spec.method_hparams).hparams == {"variant": "log1p"}
    assert parse_method("uncertainty", spec.method_hparams).hparams == {"variant": "log1p"}


def test_misspelled_method_under_methods_is_an_error():
    with pytest.raises(SpecError, match="methods.pcgard.*Did you mean 'pcgrad'"):
        parse_spec({**SYNTHETIC, "methods": {"pcgard": {"reduction": "mean"}}})


def test_a_methods_section_leaves_the_spec_name_alone():
    spec = parse_spec({**SYNTHETIC, "methods": {"gradnorm": {"alpha": 1.5}}})
    assert spec.name == "synth"  # it once took the last method's name, and so the run folder


@pytest.mark.parametrize(
    ("key", "value"),
    [("seed", 2**32), ("seed", -1), ("profile", {"steps": 10**9 + 1}), ("profile", {"every": -1})],
)
def test_numbers_out_of_bounds_name_their_key(key, value):
    with pytest.raises(SpecError, match=f"'{key}[.a-z]*': must be a whole number from"):
        parse_spec({**SYNTHETIC, key: value})


def test_every_zero_means_plain_training_in_the_spec_as_in_python():
    assert parse_spec({**SYNTHETIC, "profile": {"every": 0}}).profile.every == 0
