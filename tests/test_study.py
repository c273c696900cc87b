"""Study-file validation: every rule raises StudyError naming the key path and what is allowed."""

from __future__ import annotations

import math

import pytest
from helpers import DEFAULT_STUDY, base_study, default_priors, hypothesis, prior, problem_with, write_study

from forecast.errors import StudyError
from forecast.spec.priors import Prior
from forecast.spec.study import PARAMETERS, load_study, quarter_index


def study_error(tmp_path, data) -> StudyError:
    path = write_study(tmp_path, data)
    with pytest.raises(StudyError) as info:
        load_study(path)
    return info.value


def set_prior(data: dict, h: int, param: str, group: str, value) -> dict:
    data["hypotheses"][h]["priors"][param] = {group: value}
    return data


# --- unknown keys ---------------------------------------------------------------------------


def test_unknown_top_level_key_is_named_with_suggestion_and_allowed_keys(tmp_path):
    data = base_study()
    data["reliabilty"] = {}
    err = study_error(tmp_path, data)
    problem_with(err, "reliabilty", "unknown key", "did you mean 'reliability'?", "allowed:", "'hypotheses'")


def test_unknown_nested_key_is_named_by_path_with_suggestion(tmp_path):
    data = base_study()
    data["study"]["questoin"] = data["study"].pop("question")
    err = study_error(tmp_path, data)
    problem_with(err, "study.questoin: unknown key", "did you mean 'question'?", "'name'", "'observations'")
    problem_with(err, "study.question: required key is missing")


def test_unknown_key_inside_array_of_tables_names_the_index(tmp_path):
    data = base_study()
    data["groups"][1]["lable"] = data["groups"][1].pop("label")
    err = study_error(tmp_path, data)
    problem_with(err, "groups[1].lable: unknown key", "did you mean 'label'?", "'counterparts'")


def test_unknown_key_in_prior_table_is_named(tmp_path):
    data = set_prior(base_study(), 0, "tilt", "all", {"dist": "Normal", "kwargs": {"mu": 0, "sigma": 1}, "kwarg": 1})
    err = study_error(tmp_path, data)
    problem_with(err, "hypotheses[0] ('steady').priors.tilt.all: unknown key 'kwarg'", "did you mean 'kwargs'?")


# --- priors ---------------------------------------------------------------------------------


def test_unknown_distribution_suggests_the_close_name_and_lists_allowed(tmp_path):
    data = set_prior(base_study(), 0, "tilt", "all", prior("Normall", mu=0, sigma=1))
    err = study_error(tmp_path, data)
    msg = problem_with(
        err, "hypotheses[0] ('steady').priors.tilt.all.dist", "unknown distribution 'Normall'", "did you mean 'Normal'?"
    )
    assert "allowed here: 'Normal', 'StudentT'" in msg
    assert "HalfNormal" not in msg  # only families that fit a real-valued parameter are offered


def test_distribution_that_does_not_fit_the_support_is_rejected(tmp_path):
    data = set_prior(base_study(), 1, "spread", "all", prior("Normal", mu=0, sigma=1))
    err = study_error(tmp_path, data)
    msg = problem_with(err, "hypotheses[1] ('shift').priors.spread.all.dist", "Normal does not fit", "positive values")
    assert "'HalfNormal'" in msg and "'Gamma'" in msg and "'Normal'" not in msg.split("allowed here:")[1]


def test_unknown_kwarg_for_a_distribution_lists_its_parameters(tmp_path):
    data = set_prior(base_study(), 0, "tilt", "all", {"dist": "Normal", "kwargs": {"mu": 0, "sd": 1}})
    err = study_error(tmp_path, data)
    problem_with(err, "priors.tilt.all.kwargs", "unknown parameter 'sd' for Normal", "Normal takes 'mu', 'sigma'")
    problem_with(err, "priors.tilt.all.kwargs", "missing parameter 'sigma' for Normal")


@pytest.mark.parametrize("sigma", [0, -0.5])
@pytest.mark.parametrize(("param", "dist"), [("tilt", "Normal"), ("spread", "HalfNormal")])
def test_non_positive_scale_is_rejected(tmp_path, param, dist, sigma):
    kwargs = {"mu": 0.0, "sigma": sigma} if dist == "Normal" else {"sigma": sigma}
    data = set_prior(base_study(), 0, param, "all", {"dist": dist, "kwargs": kwargs})
    err = study_error(tmp_path, data)
    problem_with(err, f"hypotheses[0] ('steady').priors.{param}.all.kwargs.sigma: must be > 0, got {sigma!r}")


def test_non_numeric_prior_parameter_is_rejected(tmp_path):
    data = set_prior(base_study(), 0, "tilt", "all", {"dist": "Normal", "kwargs": {"mu": "zero", "sigma": 1}})
    err = study_error(tmp_path, data)
    problem_with(err, "priors.tilt.all.kwargs.mu: expected a finite number", "'zero'")


def test_missing_prior_for_a_hyperparameter_is_named(tmp_path):
    data = base_study()
    del data["hypotheses"][1]["priors"]["volatility"]
    err = study_error(tmp_path, data)
    problem_with(err, "hypotheses[1] ('shift').priors: missing 'volatility'")
    assert not any("'steady'" in p for p in err.problems)


def test_prior_missing_for_one_group_names_the_group_and_the_all_option(tmp_path):
    data = set_prior(base_study(), 0, "tilt", "west", prior("Normal", mu=0, sigma=1))
    err = study_error(tmp_path, data)
    problem_with(err, "hypotheses[0] ('steady').priors.tilt: no prior for group(s) 'east'", "'all'")


def test_unknown_hyperparameter_suggests_the_close_name(tmp_path):
    data = base_study()
    data["hypotheses"][0]["priors"]["tilts"] = data["hypotheses"][0]["priors"].pop("tilt")
    err = study_error(tmp_path, data)
    problem_with(err, "priors.tilts: unknown hyperparameter", "did you mean 'tilt'?", "'spread'")


def test_trend_prior_in_a_static_study_is_rejected(tmp_path):
    data = base_study()
    data["time"]["components"] = []
    err = study_error(tmp_path, data)
    problem_with(err, "hypotheses[0] ('steady').priors.trend", "no trend", "time.components")
    problem_with(err, "hypotheses[0] ('steady').priors.volatility", "no volatility", "time.components")


def test_static_study_with_only_tilt_and_spread_loads(tmp_path):
    data = base_study()
    data["time"]["components"] = []
    for h in data["hypotheses"]:
        del h["priors"]["trend"], h["priors"]["volatility"]
    study = load_study(write_study(tmp_path, data))
    assert study.time.static
    assert study.parameters == ["tilt", "spread"]


def test_unknown_group_in_priors_suggests_the_close_name(tmp_path):
    data = base_study()
    data["hypotheses"][0]["priors"]["tilt"]["wset"] = prior("Normal", mu=1, sigma=1)
    err = study_error(tmp_path, data)
    problem_with(
        err, "hypotheses[0] ('steady').priors.tilt.wset: unknown group", "did you mean 'west'?", "'west', 'east', 'all'"
    )


# --- ids, groups and probabilities ----------------------------------------------------------


def test_duplicate_hypothesis_id_is_rejected(tmp_path):
    data = base_study()
    data["hypotheses"][1]["id"] = "steady"
    err = study_error(tmp_path, data)
    problem_with(err, "hypotheses[1].id: 'steady' is used twice")


def test_hypothesis_id_reserved_for_the_encompassing_fit_is_rejected_by_validation(tmp_path):
    data = base_study()
    data["hypotheses"][0]["id"] = "encompassing"
    err = study_error(tmp_path, data)
    problem_with(err, "hypotheses[0].id: 'encompassing' is reserved for the encompassing model's fit")


def test_duplicate_group_id_is_rejected(tmp_path):
    data = base_study()
    data["groups"][1]["id"] = "west"
    err = study_error(tmp_path, data)
    problem_with(err, "groups[1].id: 'west' is used twice")


def test_duplicate_domain_id_is_rejected(tmp_path):
    data = base_study()
    data["domains"][1]["id"] = "defence"
    err = study_error(tmp_path, data)
    problem_with(err, "domains[1].id: 'defence' is used twice")


def test_id_that_is_not_lower_case_snake_case_is_rejected(tmp_path):
    data = base_study()
    data["groups"][0]["id"] = "West"
    err = study_error(tmp_path, data)
    problem_with(err, "groups[0].id: 'West' must be lower-case letters, digits and '_'")


def test_counterpart_in_two_groups_is_rejected(tmp_path):
    data = base_study()
    data["groups"][1]["counterparts"] = ["russia", "us"]
    err = study_error(tmp_path, data)
    problem_with(err, "groups[1].counterparts: 'us' is already in group 'west'")


def test_prior_probabilities_not_summing_to_one_are_rejected(tmp_path):
    data = base_study()
    data["hypotheses"][1]["prior_probability"] = 0.4
    err = study_error(tmp_path, data)
    problem_with(err, "hypotheses: prior probabilities must sum to 1, they sum to 0.9")


def test_prior_probability_outside_zero_one_is_rejected(tmp_path):
    data = base_study()
    data["hypotheses"][0]["prior_probability"] = 0.0
    data["hypotheses"][1]["prior_probability"] = 1.0
    err = study_error(tmp_path, data)
    problem_with(err, "hypotheses[0] ('steady').prior_probability: must be in (0, 1), got 0.0")


# --- time -----------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["start", "end", "reference"])
@pytest.mark.parametrize("bad", ["2020Q5", "2020-Q1", "Q1 2020", "2020q1"])
def test_bad_quarter_string_is_rejected(tmp_path, key, bad):
    data = base_study()
    data["time"][key] = bad
    err = study_error(tmp_path, data)
    problem_with(err, f"time.{key}: '{bad}' is not a quarter like '2019Q3'")


def test_end_before_start_is_rejected(tmp_path):
    data = base_study()
    data["time"].update(start="2021Q1", end="2020Q4", reference="2021Q1")
    err = study_error(tmp_path, data)
    problem_with(err, "time: end 2020Q4 is before start 2021Q1")


@pytest.mark.parametrize("reference", ["2019Q4", "2022Q1"])
def test_reference_outside_the_window_is_rejected(tmp_path, reference):
    data = base_study()
    data["time"]["reference"] = reference
    err = study_error(tmp_path, data)
    problem_with(err, f"time.reference: {reference} lies outside 2020Q1..2021Q4")


def test_unknown_time_component_lists_allowed_values(tmp_path):
    data = base_study()
    data["time"]["components"] = ["trend", "seasonal"]
    err = study_error(tmp_path, data)
    problem_with(err, "time.components[1]", "'trend'", "'random_walk'", "'seasonal'")


def test_reference_defaults_to_the_middle_of_the_window(tmp_path):
    data = base_study()
    del data["time"]["reference"]
    study = load_study(write_study(tmp_path, data))
    assert study.time.reference == (quarter_index("2020Q1") + quarter_index("2021Q4")) // 2
    assert study.time.n_quarters == 8
    assert study.time.quarters[0] == "2020Q1" and study.time.quarters[-1] == "2021Q4"


# --- the file itself ------------------------------------------------------------------------


def test_invalid_toml_is_reported_with_the_file_name(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text('[study\nname = "x"\n', encoding="utf-8")
    with pytest.raises(StudyError) as info:
        load_study(path)
    assert str(path) in str(info.value)
    assert "not valid TOML" in str(info.value)
    assert "line 1" in str(info.value)


def test_study_file_that_is_not_utf8_is_reported(tmp_path):
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'name = "caf\xe9"\n')
    with pytest.raises(StudyError, match="not UTF-8"):
        load_study(path)


def test_missing_study_file_is_reported(tmp_path):
    path = tmp_path / "nope.toml"
    with pytest.raises(StudyError) as info:
        load_study(path)
    assert str(info.value) == f"{path}: study file not found"


def test_several_problems_are_reported_together(tmp_path):
    data = base_study()
    data["time"]["start"] = "2020Q9"
    data["groups"][1]["id"] = "west"
    data["hypotheses"][0]["prior_probability"] = 0.2
    data["hypotheses"][1]["priors"]["spread"] = {"all": prior("Normal", mu=0, sigma=1)}
    err = study_error(tmp_path, data)
    assert len(err.problems) >= 4
    text = str(err)
    assert text.startswith(f"{(tmp_path / 'mini.toml')}: the study file has problems:")
    for fragment in (
        "time.start: '2020Q9'",
        "groups[1].id: 'west' is used twice",
        "they sum to 0.7",
        "spread.all.dist",
    ):
        assert fragment in text


def test_several_structural_problems_are_reported_together(tmp_path):
    data = base_study()
    data["study"]["questoin"] = data["study"].pop("question")
    del data["domains"]
    data["time"]["stpe"] = "quarter"
    err = study_error(tmp_path, data)
    problem_with(err, "study.questoin")
    problem_with(err, "domains: required key is missing")
    problem_with(err, "time.stpe", "did you mean 'step'?")


# --- studies that load ----------------------------------------------------------------------


def test_default_study_loads_with_three_hypotheses():
    study = load_study(DEFAULT_STUDY)
    assert study.name == "turkey_nato"
    assert [h.id for h in study.hypotheses] == ["hedging", "realignment", "alignment"]
    assert [g.id for g in study.groups] == ["russia", "nato", "balancing"]
    assert study.parameters == ["tilt", "spread", "trend", "volatility"]
    assert study.time.reference == quarter_index("2019Q3")
    # every hypothesis has a prior for every (parameter, group) pair
    for h in study.hypotheses:
        assert set(h.priors) == {(p, g.id) for p in study.parameters for g in study.groups}
    assert len(study.sha256) == 64


@pytest.mark.parametrize("order", ["all_first", "group_first"])
def test_group_specific_prior_overrides_all_regardless_of_key_order(tmp_path, order):
    default, special = prior("Normal", mu=0.0, sigma=1.0), prior("Normal", mu=2.0, sigma=0.5)
    per_group = {"all": default, "east": special} if order == "all_first" else {"east": special, "all": default}
    data = base_study()
    data["hypotheses"][0]["priors"]["tilt"] = per_group
    study = load_study(write_study(tmp_path, data))
    priors = study.hypothesis("steady").priors
    assert priors[("tilt", "east")] == Prior("Normal", {"mu": 2.0, "sigma": 0.5})
    assert priors[("tilt", "west")] == Prior("Normal", {"mu": 0.0, "sigma": 1.0})


def test_rounded_probabilities_of_the_default_study_sum_to_one():
    study = load_study(DEFAULT_STUDY)
    probs = [h.prior_probability for h in study.hypotheses]
    assert math.fsum(probs) == pytest.approx(1.0, abs=1e-12)
    assert probs[0] == pytest.approx(0.334, abs=1e-9)


def test_rounded_thirds_are_normalised_to_sum_to_exactly_one(tmp_path):
    data = base_study()
    data["hypotheses"] = [hypothesis(h, 0.333) for h in ("a", "b", "c")]
    study = load_study(write_study(tmp_path, data))
    probs = [h.prior_probability for h in study.hypotheses]
    assert probs == pytest.approx([1 / 3] * 3, abs=1e-12)
    assert math.fsum(probs) == pytest.approx(1.0, abs=1e-12)


def test_observations_path_is_resolved_relative_to_the_study_file(tmp_path, monkeypatch):
    data = base_study(observations="../data/mini.csv")
    data["study"]["runs"] = "../out/runs"
    write_study(tmp_path / "priors", data)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    study = load_study(tmp_path / "priors" / "mini.toml")
    assert study.observations_path == (tmp_path / "data" / "mini.csv").resolve()
    assert study.runs_path == (tmp_path / "out" / "runs").resolve()
    # a relative study path is taken from the working directory, the data path from the study
    monkeypatch.chdir(tmp_path)
    study = load_study("priors/mini.toml")
    assert study.path == (tmp_path / "priors" / "mini.toml").resolve()
    assert study.observations_path == (tmp_path / "data" / "mini.csv").resolve()


def test_unknown_hypothesis_lookup_suggests_the_close_id(tmp_path):
    study = load_study(write_study(tmp_path))
    with pytest.raises(StudyError, match=r"no hypothesis 'stedy' \(did you mean 'steady'\?\)"):
        study.hypothesis("stedy")


def test_test_helpers_state_a_prior_for_every_model_parameter():
    # guards the helpers: if the model gains a parameter, the mini study must give it a prior
    assert set(default_priors()) == set(PARAMETERS)


# --- names and ids become paths; hostile text (issue 13) ------------------------------------------


@pytest.mark.parametrize("name", ["../../../x", "/etc/x", "..", "a/b", "Mini", "-mini", "mini\n", "", "x" * 65])
def test_a_study_name_that_is_not_a_slug_is_refused(tmp_path, name):
    data = base_study()
    data["study"]["name"] = name
    err = study_error(tmp_path, data)
    problem_with(err, "study.name:", "must be a slug: lower-case letters, digits, '_' and '-'", "at most 64")


@pytest.mark.parametrize("name", ["mini", "turkey-nato", "2024_gulf", "x" * 64])
def test_a_slug_is_a_valid_study_name(tmp_path, name):
    data = base_study()
    data["study"]["name"] = name
    assert load_study(write_study(tmp_path, data)).name == name


@pytest.mark.parametrize("hid", ["../x", "/tmp/x", "a.b", "steady\n", "x" * 65, "1x", "Steady"])
def test_a_hypothesis_id_that_could_leave_a_folder_is_refused(tmp_path, hid):
    data = base_study()
    data["hypotheses"][0]["id"] = hid
    err = study_error(tmp_path, data)
    problem_with(err, "hypotheses[0].id:", "must be lower-case letters, digits and '_', starting with a letter")


@pytest.mark.parametrize("kind", ["groups", "domains"])
def test_group_and_domain_ids_longer_than_64_characters_are_refused(tmp_path, kind):
    data = base_study()
    data[kind][0]["id"] = "a" * 65
    err = study_error(tmp_path, data)
    problem_with(err, f"{kind}[0].id:", "at most 64 characters")


def test_a_counterpart_with_a_trailing_newline_is_refused(tmp_path):
    data = base_study()
    data["groups"][0]["counterparts"] = ["us\n", "eu"]
    err = study_error(tmp_path, data)
    problem_with(err, "groups[0].counterparts: 'us\\n' must be lower-case letters")


@pytest.mark.parametrize("char", ["\x00", "\x1b", "\x07", "\x7f", "\x9b"])
def test_control_characters_are_refused_in_every_text_field(tmp_path, char):
    data = base_study()
    data["study"]["question"] = f"Does Testland{char} tilt east?"
    data["groups"][1]["label"] = f"East{char}"
    data["hypotheses"][1]["claim"] = f"{char}"
    err = study_error(tmp_path, data)
    code = f"U+{ord(char):04X}"
    problem_with(err, "study.question: contains the control character", code, "at position 14")
    problem_with(err, "groups[1].label: contains the control character", code)
    problem_with(err, "hypotheses[1].claim: contains the control character", code)


def test_control_characters_are_refused_in_questions_and_keys(tmp_path):
    data = base_study()
    data["questions"] = [{"id": "q1", "text": "Will it\x00 happen?"}]
    data["study"]["odd\x00key"] = "x"
    err = study_error(tmp_path, data)
    problem_with(err, "questions[0].text: contains the control character U+0000")
    problem_with(err, "study: the key 'odd\\x00key' contains a control character")


def test_tabs_and_line_breaks_are_allowed_in_text(tmp_path):
    data = base_study()
    data["study"]["question"] = "Does Testland\ttilt\neast?\r\n"
    data["hypotheses"][0]["claim"] = "A claim\non two lines."
    study = load_study(write_study(tmp_path, data))
    assert study.question == "Does Testland\ttilt\neast?"


def test_an_observations_path_the_file_system_cannot_hold_is_a_study_problem(tmp_path):
    data = base_study()
    data["study"]["observations"] = "x" * 5000 + "/events.csv"
    path = write_study(tmp_path, data)
    try:
        study = load_study(path)
    except StudyError as e:
        problem_with(e, "study.observations:", "is not a usable path")
    else:  # a file system that resolves it: it is just a path that does not exist
        assert study.observations_path.name == "events.csv"


def test_a_directory_given_as_the_study_is_reported_as_a_directory(tmp_path):
    with pytest.raises(StudyError) as info:
        load_study(tmp_path)
    assert (
        str(info.value)
        == f"{tmp_path}: is a directory, not a study file (name the .toml file, e.g. priors/turkey_nato.toml)"
    )


def test_a_study_file_far_too_large_is_refused_before_parsing(tmp_path, monkeypatch):
    import forecast.spec.study as study_module

    monkeypatch.setattr(study_module, "MAX_STUDY_BYTES", 1000)
    monkeypatch.setattr(study_module.tomllib, "loads", lambda *_: pytest.fail("the file was parsed"))
    path = tmp_path / "big.toml"
    path.write_text("# padding\n" * 200, encoding="utf-8")
    with pytest.raises(StudyError, match="2,000 bytes is far too large for a study file"):
        load_study(path)


def test_echoed_values_are_cut_to_about_80_characters(tmp_path):
    data = base_study()
    data["time"]["start"] = "9" * 10_000
    data["hypotheses"][0]["priors"]["tilt"] = {"all": {"dist": "N" * 10_000, "kwargs": {}}}
    data["groups"][0]["counterparts"] = ["u" * 10_000]
    err = study_error(tmp_path, data)
    assert all(len(p) < 400 for p in err.problems), [len(p) for p in err.problems]
    problem_with(err, "time.start:", "(10,000 characters)", "is not a quarter")
    problem_with(err, "tilt.all.dist: unknown distribution", "(10,000 characters)")
    problem_with(err, "groups[0].counterparts:", "(10,000 characters)")


def test_an_unknown_key_of_any_length_is_echoed_cut(tmp_path):
    data = base_study()
    data["study"]["k" * 10_000] = "x"
    data["study"]["name"] = "n" * 10_000
    err = study_error(tmp_path, data)
    assert all(len(p) < 400 for p in err.problems), [len(p) for p in err.problems]
    problem_with(err, "study.'kkkk", "(10,000 characters): unknown key")


def test_deeply_nested_toml_is_a_study_error(tmp_path):
    path = tmp_path / "deep.toml"
    path.write_text("x = " + "[" * 100_000 + "]" * 100_000 + "\n", encoding="utf-8")
    with pytest.raises(StudyError):
        load_study(path)


def test_an_unknown_hypothesis_lists_the_studys_hypotheses(tmp_path):
    study = load_study(write_study(tmp_path))
    with pytest.raises(StudyError) as info:
        study.hypothesis("x" * 500)
    assert "the study has 'steady', 'shift'" in str(info.value)
    assert len(str(info.value)) < 300


# --- [model] overdispersion -------------------------------------------------------------------


def test_model_defaults_to_no_overdispersion(tmp_path):
    study = load_study(write_study(tmp_path))
    assert study.overdispersion == "none" and not study.overdispersed and study.concentration is None
    assert study.model_key == ("none",)


def test_cell_overdispersion_takes_the_default_concentration_prior(tmp_path):
    from forecast.spec.study import DEFAULT_CONCENTRATION

    data = base_study()
    data["model"] = {"overdispersion": "cell"}
    study = load_study(write_study(tmp_path, data))
    assert study.overdispersed and study.concentration == DEFAULT_CONCENTRATION
    assert study.concentration.dist == "LogNormal" and study.concentration.kwargs["mu"] == pytest.approx(math.log(20))
    assert study.model_key == ("cell", "LogNormal", DEFAULT_CONCENTRATION.values())


def test_cell_overdispersion_takes_a_stated_concentration_prior(tmp_path):
    data = base_study()
    data["model"] = {"overdispersion": "cell", "concentration": prior("Gamma", alpha=2.0, beta=0.05)}
    study = load_study(write_study(tmp_path, data))
    assert study.concentration == Prior("Gamma", {"alpha": 2.0, "beta": 0.05})


@pytest.mark.parametrize(
    ("model", "fragments"),
    [
        ({"overdispersion": "cells"}, ("model.overdispersion", "'cells'", "did you mean 'cell'", "'none'")),
        ({"overdispersion": True}, ("model.overdispersion",)),
        ({"concentration": prior("Gamma", alpha=2.0, beta=0.1)}, ("model.concentration", 'overdispersion = "cell"')),
        (
            {"overdispersion": "cell", "concentration": prior("Normal", mu=20.0, sigma=5.0)},
            ("model.concentration.dist", "positive values"),
        ),
        (
            {"overdispersion": "cell", "concentration": prior("LogNormal", mu=3.0, sigma=-1.0)},
            ("model.concentration.kwargs.sigma", "must be > 0"),
        ),
        ({"overdispersion": "cell", "concentration": 20}, ("model.concentration", "expected a table")),
        ({"overdispesion": "cell"}, ("model", "unknown key", "overdispersion")),
    ],
)
def test_model_options_are_checked_with_clear_messages(tmp_path, model, fragments):
    data = base_study()
    data["model"] = model
    with pytest.raises(StudyError) as err:
        load_study(write_study(tmp_path, data))
    problem_with(err.value, *fragments)
