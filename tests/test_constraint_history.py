"""`forecast history` on a study with constraint hypotheses (issue 15): their probabilities at every
evaluated quarter from ONE encompassing fit per quarter, prior masses estimated once, stored in
history.json apart from the prior-specified hypotheses, rendered and drawn as their own panel.

Fast layer: the records' round trip and the renderers on hand-made records. Slow layer: a tiny
two-group study with prior-specified and constraint hypotheses, fitted once by `forecast update`
(the encompassing fit added to the run where `forecast update` stores it, when it does not yet).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import base_study, event, prior, quarterly_events, warm_and_cold_hypotheses, write_mini

from forecast.data.cells import cell_data
from forecast.data.observations import load_observations
from forecast.fit.sampler import SamplerSettings, StudyModel
from forecast.runs.layout import HISTORY, POSTERIOR_DIR
from forecast.runs.store import write_netcdf
from forecast.runs.stored import StoredRun
from forecast.spec.constraints import ENCOMPASSING_ID
from forecast.spec.study import load_study
from forecast.workflows.constraints import compare, encompassing_hypothesis
from forecast.workflows.history import History, compute_history, run_history
from forecast.workflows.history.records import ConstraintHistory, ConstraintPoint

SETTINGS = SamplerSettings(draws=1000, tune=500, chains=4, cores=2, seed=5)
PRIOR_DRAWS = 4_000


def constraint_study(prior_specified: bool = True) -> dict:
    """Two groups (west, east), two domains, 2020Q1..2020Q4, no time components; constraint
    hypotheses that partition the space: east cooperative, or not and west ahead, or neither."""
    study = base_study()
    study["time"] = {"step": "quarter", "start": "2020Q1", "end": "2020Q4", "components": []}
    priors = {"tilt": {"all": prior("Normal", mu=0.0, sigma=1.0)}, "spread": {"all": prior("HalfNormal", sigma=0.5)}}
    study["hypotheses"] = warm_and_cold_hypotheses() if prior_specified else []
    study["encompassing"] = {"priors": priors, "prior_draws": PRIOR_DRAWS}
    study["constraint_hypotheses"] = [
        {"id": "east_cooperative", "label": "East cooperative", "constraints": ["share(east, all) > 0.5"]},
        {
            "id": "west_ahead",
            "label": "West ahead",
            "constraints": ["share(east, all) <= 0.5", "share(west, all) > share(east, all)"],
        },
    ]
    if not prior_specified:
        del study["hypotheses"]
    return study


def rows() -> list[dict]:
    """Evidence known in Q1, Q2 and Q4 (and one report in Q3 of a Q2 event)."""
    out = quarterly_events(((1, 6), (4, 6), (10, 8)))
    out.append(event(len(out) + 1, event_date="2020-06-20", report_date="2020-07-02", counterpart="russia"))
    return out


def add_encompassing_fit(run: StoredRun, study, settings: SamplerSettings) -> None:
    """Fit the encompassing model on all of the run's observations and store it where `forecast
    update` stores it (posterior/encompassing.nc), unless the run already has it."""
    if (run.path / POSTERIOR_DIR / f"{ENCOMPASSING_ID}.nc").is_file():
        return
    import dataclasses

    obs = load_observations(study)
    enc = encompassing_hypothesis(study.constraints)
    model = StudyModel(dataclasses.replace(study, hypotheses=(enc,)), cell_data(obs.table, study))
    fit = model.fit(enc, settings)
    assert fit.diagnostics.converged, fit.diagnostics.problems
    (run.path / POSTERIOR_DIR).mkdir(exist_ok=True)
    write_netcdf(run.path / POSTERIOR_DIR / f"{ENCOMPASSING_ID}.nc", fit.trace)


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    from forecast.workflows.update import run_update

    d = tmp_path_factory.mktemp("chist")
    path, _ = write_mini(d, rows(), constraint_study())
    runs = d / "runs"
    update = run_update(path, SETTINGS, runs_root=runs, robustness=False)
    study = load_study(path)
    run = StoredRun.find(update.run_dir)
    add_encompassing_fit(run, study, SETTINGS)
    history = run_history(path, runs_root=runs)
    return path, runs, run, study, history


# --- records and renderers (fast) -------------------------------------------------------------------


def _point(quarter, source, probs, **kw) -> ConstraintPoint:
    ids = list(probs)
    return ConstraintPoint(
        quarter=quarter,
        as_of=kw.get("as_of", "2020-03-31"),
        n_observations=kw.get("n", 0),
        new_observations=kw.get("new", 0),
        source=source,
        probabilities=probs,
        probabilities_se=dict.fromkeys(ids, 0.01),
        probabilities_upper=probs,
        log_bf=dict.fromkeys(ids, 0.0),
        log_bf_se=dict.fromkeys(ids, 0.01),
        bound=dict.fromkeys(ids),
        posterior_mass=dict.fromkeys(ids, 1 / len(ids)),
        leader=max(probs, key=probs.get),
        converged=True,
    )


def hand_made(prior_specified: bool = True) -> History:
    from forecast.workflows.history import HistoryPoint

    ids = ["a", "b", "none_of_these"]
    c = ConstraintHistory(
        hypotheses=[
            {"id": h, "label": h.upper(), "claim": "", "constraints": [], "complement": h == "none_of_these"}
            | {"prior_probability": 1 / 3}
            for h in ids
        ],
        prior_masses={h: {"value": 1 / 3, "se": 0.01, "method": "draws", "n": 100.0, "hits": 33} for h in ids},
        prior_draws=100,
        seed=1,
        points=[
            _point("2019Q4", "prior", dict.fromkeys(ids, 1 / 3), as_of="2019-12-31"),
            _point("2020Q1", "fit", {"a": 0.6, "b": 0.3, "none_of_these": 0.1}, n=5, new=5),
            _point("2020Q2", "run", {"a": 0.7, "b": 0.2, "none_of_these": 0.1}, as_of="2020-06-30", n=9, new=4),
        ],
        seconds=3.0,
        prior_mass_seconds=0.5,
        method="m",
    )
    points = []
    if prior_specified:
        p = {"warm": 0.5, "cold": 0.5}
        for q, as_of, src in (("2019Q4", "2019-12-31", "prior"), ("2020Q1", "2020-03-31", "fit")):
            points.append(
                HistoryPoint(q, as_of, 0, 0, src, p, dict.fromkeys(p, 0.0), dict.fromkeys(p), dict.fromkeys(p), True)
            )
    hyps = [
        {"id": "warm", "label": "Warm", "prior_probability": 0.5},
        {"id": "cold", "label": "Cold", "prior_probability": 0.5},
    ]
    return History("s", hyps if prior_specified else [], 1, {"chains": 4, "draws": 10}, points, 4.0, constraints=c)


def test_history_json_keeps_the_constraint_comparison_apart_and_reads_back():
    h = hand_made()
    d = json.loads(json.dumps(h.to_dict()))
    assert [x["id"] for x in d["hypotheses"]] == ["warm", "cold"]
    assert set(d["points"][1]["probabilities"]) == {"warm", "cold"}  # not merged with the constraint ones
    assert [p["source"] for p in d["constraints"]["points"]] == ["prior", "fit", "run"]
    assert d["constraints"]["leader"] == "a" and d["schema_version"] == 1
    back = History.from_dict(d)
    assert back.constraints == h.constraints
    assert back.to_dict() == h.to_dict()


def test_a_history_json_without_constraints_reads_as_before():
    d = hand_made().to_dict()
    del d["constraints"]
    assert History.from_dict(d).constraints is None


def test_the_text_shows_the_constraint_comparison_as_its_own_table():
    from forecast.reports.text.history import render_history

    text = render_history(hand_made())
    assert "Constraint hypotheses" in text
    table = text[text.index("Constraint hypotheses") :]
    assert "warm" not in table.split("\n\n")[0]
    assert "0.700" in table and "the run's encompassing fit" in table
    only = render_history(hand_made(prior_specified=False))
    assert "Constraint hypotheses" in only and "0.600" in only


def test_the_plot_draws_a_constraint_panel():
    from forecast.reports.plots.history import history_png

    png = history_png(hand_made().to_dict())
    only = history_png(hand_made(prior_specified=False).to_dict())
    assert png[:4] == b"\x89PNG" and only[:4] == b"\x89PNG"


# --- on a fitted run (slow) ------------------------------------------------------------------------


@pytest.mark.slow
def test_history_gives_constraint_probabilities_at_every_point(mixed):
    _, _, run, study, history = mixed
    c = history.constraints
    ids = [h.id for h in study.constraints.hypotheses]
    assert [p.source for p in c.points] == ["prior", "fit", "fit", "fit", "run"]
    assert [p.source for p in c.points] == [p.source for p in history.points]
    assert [p.quarter for p in c.points] == [p.quarter for p in history.points]
    for p in c.points:
        assert list(p.probabilities) == ids
        assert sum(p.probabilities.values()) == pytest.approx(1.0)
    assert c.points[0].probabilities == pytest.approx({h: 1 / 3 for h in ids})
    # Its own cost (prior masses, encompassing fits, regions), not the prior-specified fits'.
    assert sum(p.seconds for p in c.points) <= c.seconds < history.seconds
    stored = json.loads((run.path / HISTORY).read_text())
    assert stored["constraints"]["points"][-1]["probabilities"] == c.points[-1].probabilities
    assert set(stored["points"][-1]["probabilities"]) == {"warm", "cold"}


@pytest.mark.slow
def test_the_last_point_equals_the_runs_constraint_comparison(mixed):
    _, _, run, study, history = mixed
    full = compare(
        study, study.constraints, run.open_posterior(ENCOMPASSING_ID), SETTINGS.seed, PRIOR_DRAWS, factors=()
    )
    last = history.constraints.points[-1]
    for h in full.hypotheses:
        assert last.probabilities[h.id] == h.posterior_probability
        assert last.log_bf[h.id] == h.bayes_factor.log_bf
        assert history.constraints.prior_masses[h.id]["value"] == h.prior_mass.value


@pytest.mark.slow
def test_prior_masses_are_estimated_once_and_a_constraint_only_study_works(tmp_path, monkeypatch):
    import forecast.workflows.history.constraints as module

    calls = []
    real = module.prior_masses
    monkeypatch.setattr(module, "prior_masses", lambda *a, **k: calls.append(1) or real(*a, **k))
    path, _ = write_mini(tmp_path, rows()[:-1], constraint_study(prior_specified=False))  # no evidence in Q3
    study = load_study(path)
    history = compute_history(study, load_observations(study), settings=SETTINGS)
    assert calls == [1]
    assert history.points == [] and history.hypotheses == []
    c = history.constraints
    assert [p.quarter for p in c.points] == ["2019Q4", "2020Q1", "2020Q2", "2020Q3", "2020Q4"]
    assert [p.source for p in c.points] == ["prior", "fit", "fit", "reused", "fit"]
    assert c.points[3].probabilities == c.points[2].probabilities
    assert all(sum(p.probabilities.values()) == pytest.approx(1.0) for p in c.points)
    assert history.n_fitted == 3 and json.loads(json.dumps(history.to_dict()))["constraints"]["n_fitted"] == 3


@pytest.mark.slow
def test_what_moved_the_constraint_comparison_sums_to_its_change(mixed):
    _, _, _, _, history = mixed
    moved = history.constraints.attribution
    assert moved is not None and len(moved.hypotheses) == 2
    assert moved.hypotheses[0] == history.constraints.leader
    for i in moved.intervals:
        if i.attributed and i.change is not None:
            assert i.importance_change == pytest.approx(
                sum(e.contribution for e in i.top_events) + (i.other_contribution or 0.0), abs=1e-9
            )
            assert abs(i.agreement_z) < 4


@pytest.mark.slow
def test_cli_history_shows_both_comparisons(mixed):
    from click.testing import CliRunner

    from forecast.cli import main

    path, runs, run, *_ = mixed
    plot = run.path.parent / "support.png"
    res = CliRunner().invoke(
        main, ["history", str(path), "--runs-dir", str(runs), "--every", "4", "--plot", str(plot), "--quiet"]
    )
    assert res.exit_code == 0, res.output
    assert plot.read_bytes()[:4] == b"\x89PNG"
    assert (run.path.parent / "support_constraints.png").read_bytes()[:4] == b"\x89PNG"  # a figure of its own
    assert "Constraint hypotheses" in res.output and "east_cooperative" in res.output
    stored = json.loads((run.path / HISTORY).read_text())
    assert stored["every"] == 4 and np.isfinite(stored["constraints"]["seconds"])


@pytest.mark.slow
def test_the_runs_encompassing_fit_problems_flag_the_last_point(mixed, tmp_path):
    import shutil

    from forecast.runs.layout import CONSTRAINTS, CONSTRAINTS_SCHEMA

    path, _, run, study, _ = mixed
    copy = tmp_path / "run"
    shutil.copytree(run.path, copy)
    diagnostics = {"converged": False, "problems": ["tail ESS 300 < 400"]}
    StoredRun.open(copy).write_json(
        CONSTRAINTS, {"schema_version": CONSTRAINTS_SCHEMA, "converged": False, "diagnostics": diagnostics}
    )
    history = run_history(path, run_dir=copy, every=4)
    last = history.constraints.points[-1]
    assert last.source == "run" and not last.converged and last.problems == ["tail ESS 300 < 400"]
    assert not history.converged
