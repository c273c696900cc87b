"""Judging fits in the background (forecast.fit.hypothesis.fit_hypotheses) changes no number."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import events, static_study, write_events, write_study

from forecast.data.cells import cell_data
from forecast.data.observations import load_observations
from forecast.fit.hypothesis import fit_hypotheses, fit_hypothesis
from forecast.fit.sampler import SamplerSettings, StudyModel
from forecast.spec.study import load_study


@pytest.mark.slow
def test_fits_judged_while_the_next_samples_equal_fits_judged_one_by_one(tmp_path):
    rows = events(9, counterpart="c", domain="d", event_date="2020-02-10", outcome="cooperative")
    rows += events(5, counterpart="c", domain="d", event_date="2020-08-10", outcome="conflictual", intensity="-3")
    write_events(tmp_path / "events.csv", [dict(r, id=f"E{i}") for i, r in enumerate(rows)])
    study = load_study(write_study(tmp_path, static_study("pipelined", {"low": -0.5, "high": 0.5})))
    model = StudyModel(study, cell_data(load_observations(study).table, study))
    settings = SamplerSettings(draws=200, tune=200, chains=2, seed=5)

    said: list[tuple] = []
    together = fit_hypotheses(
        model,
        study.hypotheses,
        settings,
        starting=lambda i, h: said.append(("starting", i, h.id)),
        sampled=lambda h, fit: said.append(("sampled", h.id)),
    )
    alone = [fit_hypothesis(model, h, settings) for h in study.hypotheses]

    assert said == [("starting", 1, "low"), ("sampled", "low"), ("starting", 2, "high"), ("sampled", "high")]
    assert [j.fit.hypothesis for j in together] == ["low", "high"]
    for a, b in zip(together, alone, strict=True):
        np.testing.assert_array_equal(a.fit.unconstrained, b.fit.unconstrained)
        assert a.bridge.log_ml == b.bridge.log_ml and a.bridge.se == b.bridge.se
        assert a.loo.elpd == b.loo.elpd
        np.testing.assert_array_equal(a.loo.pareto_k, b.loo.pareto_k)
        assert a.fit.diagnostics == b.fit.diagnostics
