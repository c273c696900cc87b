"""The convergence gate's second chance: a fit short of effective draws gets more chains, pooled;
any other failure a fresh fit with longer tuning (forecast.fit.sampler.StudyModel.fit)."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from helpers import events, static_study, write_events, write_study

from forecast.data.cells import cell_data
from forecast.data.observations import load_observations
from forecast.fit import sampler
from forecast.fit.sampler import Diagnostics, SamplerSettings, StudyModel, more_chains, only_short_of_draws, pooled
from forecast.spec.study import load_study


def _diag(*problems: str) -> Diagnostics:
    return Diagnostics(1.0, 500.0, 500.0, 0, 0.0, 1.0, converged=not problems, problems=problems)


def test_only_an_effective_sample_size_failure_counts_as_short_of_draws():
    assert only_short_of_draws(_diag("tail ESS 250 < 400"))
    assert only_short_of_draws(_diag("bulk ESS 300 < 400", "tail ESS 250 < 400", "warning: E-BFMI 0.20 < 0.3"))
    assert not only_short_of_draws(_diag())  # nothing failed
    assert not only_short_of_draws(_diag("R-hat 1.020 > 1.01", "tail ESS 250 < 400"))
    assert not only_short_of_draws(_diag("tail ESS 250 < 400", "2 divergent transition(s)"))
    assert not only_short_of_draws(_diag("warning: tree depth saturated in 9% of draws"))


def test_a_fit_gets_as_many_more_chains_as_its_shortfall_needs_in_whole_rounds_of_cores():
    def short(ess: float) -> Diagnostics:
        return Diagnostics(1.0, 900.0, ess, 0, 0.0, 1.0, converged=False, problems=(f"tail ESS {ess:.0f} < 400",))

    margin = sampler.MORE_CHAINS_MARGIN * sampler.ESS_MIN
    # 4 chains at ESS 360 reach margin x 400 with 4 * (margin / 360 - 1) more: one round of 2 cores
    assert 4 * (margin / 360 - 1) <= 2 and more_chains(short(360.0), chains=4, cores=2) == 2
    # at ESS 250 they need more than two: two rounds, i.e. as many chains again
    assert 2 < 4 * (margin / 250 - 1) <= 4 and more_chains(short(250.0), chains=4, cores=2) == 4
    # never more than as many again, never less than one round; the bulk ESS counts too
    assert more_chains(short(20.0), chains=4, cores=2) == 4
    assert more_chains(short(399.0), chains=8, cores=2) == 2
    assert more_chains(short(399.0), chains=8, cores=1) == 2  # 8 * (480 / 399 - 1) = 1.6 -> 2
    bulk_short = Diagnostics(1.0, 250.0, 900.0, 0, 0.0, 1.0, converged=False, problems=("bulk ESS 250 < 400",))
    assert more_chains(bulk_short, chains=4, cores=2) == 4


def _trace(seed: int, chains: int = 4, draws: int = 300) -> tuple:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(chains, draws))
    coords = {"chain": np.arange(chains), "draw": np.arange(draws)}
    posterior = xr.Dataset({"mu": (("chain", "draw"), x)}, coords=coords)
    stats = xr.Dataset(
        {
            "diverging": (("chain", "draw"), np.zeros((chains, draws), dtype=bool)),
            "maxdepth_reached": (("chain", "draw"), np.zeros((chains, draws), dtype=bool)),
            "energy": (("chain", "draw"), rng.normal(size=(chains, draws))),
        },
        coords=coords,
    )
    trace = xr.DataTree.from_dict({"posterior": posterior, "sample_stats": stats})
    return trace, x[..., None], sampler.diagnose(trace)


def test_pooled_samplings_keep_every_draw_in_order_with_the_chains_renumbered():
    a, b = _trace(1), _trace(2)
    trace, unconstrained, diag = pooled(a, b)
    assert trace.posterior.sizes["chain"] == 8 and list(trace.posterior.chain.values) == list(range(8))
    np.testing.assert_array_equal(trace.posterior["mu"].values[:4], a[0].posterior["mu"].values)
    np.testing.assert_array_equal(trace.posterior["mu"].values[4:], b[0].posterior["mu"].values)
    np.testing.assert_array_equal(unconstrained, np.concatenate([a[1], b[1]]))
    assert trace.sample_stats.sizes["chain"] == 8
    # Independent draws: pooling twice the chains about doubles the effective sample size.
    assert 1.6 * a[2].ess_bulk_min < diag.ess_bulk_min < 2.5 * a[2].ess_bulk_min


@pytest.fixture
def tiny_model(tmp_path):
    rows = events(12, counterpart="c", domain="d", event_date="2020-02-10", outcome="cooperative")
    rows += events(8, counterpart="c", domain="d", event_date="2020-08-10", outcome="conflictual", intensity="-3")
    write_events(tmp_path / "events.csv", [dict(r, id=f"E{i}") for i, r in enumerate(rows)])
    study = load_study(write_study(tmp_path, static_study("retry", {"low": -0.5, "high": 0.5})))
    return study, StudyModel(study, cell_data(load_observations(study).table, study))


@pytest.mark.slow
def test_a_fit_short_of_effective_draws_gets_the_chains_it_needs_and_passes(tiny_model, monkeypatch):
    study, model = tiny_model
    h = study.hypotheses[0]
    settings = SamplerSettings(draws=300, tune=200, chains=4, seed=3)
    _, first_draws, first = model._sample(h, settings)
    # A gate just above the effective sample size one sampling reaches, well below what two pooled
    # ones do (and R-hat out of the way, which 4 x 300 draws of a tiny model can graze).
    monkeypatch.setattr(sampler, "ESS_MIN", 1.15 * min(first.ess_bulk_min, first.ess_tail_min))
    monkeypatch.setattr(sampler, "RHAT_MAX", 1.05)
    said: list[str] = []
    fit = model.fit(h, settings, progress=said.append)
    assert fit.attempts == 2 and fit.diagnostics.converged, fit.diagnostics.problems
    # 1.15 x short of 1.2 x the gate: 4 * (1.2 * 1.15 - 1) = 1.5 more chains, one round of two cores
    assert fit.settings.chains == 6 and fit.trace.posterior.sizes["chain"] == 6
    assert fit.unconstrained.shape[:2] == (6, 300)
    assert any("more chains" in s for s in said) and not any("longer tuning" in s for s in said)
    # The first four chains are the first sampling's; the added ones are new draws.
    np.testing.assert_array_equal(fit.unconstrained[:4], first_draws)
    assert not np.allclose(fit.unconstrained[4:], first_draws[:2])
    # Same inputs and seed, same numbers.
    again = model.fit(h, settings)
    np.testing.assert_array_equal(again.unconstrained, fit.unconstrained)


@pytest.mark.slow
def test_a_fit_still_short_after_pooling_is_refitted_with_longer_tuning(tiny_model, monkeypatch):
    study, model = tiny_model
    monkeypatch.setattr(sampler, "ESS_MIN", 10**9)  # no fit can pass ...
    monkeypatch.setattr(sampler, "RHAT_MAX", 10.0)  # ... and ESS alone fails it
    said: list[str] = []
    settings = SamplerSettings(draws=60, tune=100, chains=2, seed=4)
    fit = model.fit(study.hypotheses[0], settings, progress=said.append)
    assert fit.attempts == 3 and not fit.diagnostics.converged
    assert fit.settings.chains == 2 and fit.settings.tune == 100 * sampler.RETRY_TUNE_FACTOR
    assert [("more chains" in s, "longer tuning" in s) for s in said] == [(True, False), (False, True)]


def test_evidence_reads_each_hypothesis_with_its_own_number_of_chains(tmp_path):
    """A pooled fit (8 chains) beside a plain one (4): the evidence context keeps each one's chains,
    so per-hypothesis effective sample sizes are computed on the right chains."""
    from helpers import copy_golden

    from forecast.runs.stored import StoredRun
    from forecast.workflows.evidence.context import load_run

    study_path, _, run_dir = copy_golden(tmp_path)
    path = run_dir / "posterior" / "shift.nc"
    tree = xr.open_datatree(path)
    doubled = {}
    for name, node in tree.children.items():
        ds = node.to_dataset().load()
        if "chain" in ds.dims:
            again = ds.assign_coords(chain=ds["chain"].values + ds.sizes["chain"])
            ds = xr.concat([ds, again], dim="chain")
        doubled[name] = ds
    tree.close()
    xr.DataTree.from_dict(doubled).to_netcdf(path)
    study = load_study(study_path)
    ctx = load_run(study, StoredRun.open(run_dir))
    per = dict(zip(ctx.hypotheses, ctx.chains_per, strict=True))
    assert per["shift"] == 2 * per["steady"] and ctx.chains == per["steady"]
    assert [len(e) for e in ctx.eta] == [c * ctx.draws for c in ctx.chains_per]
