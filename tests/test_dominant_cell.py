"""Strong data in one cell, weak data elsewhere: every hypothesis passes the convergence gate
on its first attempt (issue 17, item 4).

The study: two groups, four domains, twelve quarters. Group 'west' has one (domain, quarter)
cell with ~3000 events (an imported feed's favourite story) and a handful of events in its
other cells; group 'east' has a handful of events in all. The data pin the dominant cell's
log-odds to a few hundredths, and barely say anything about the group's spread or level
elsewhere: sampled centred (the domain's log-odds ~ Normal(tilt, spread)) that is a funnel in
(tilt, spread), which failed the gate for every hypothesis even after the retry.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.helpers import base_study, event, hypothesis, prior, write_events, write_study

DOMAINS = ("defence", "energy", "trade", "diplomacy")
START, END, REFERENCE = "2020Q1", "2022Q4", "2020Q3"
N_QUARTERS = 12
# The dominant cell: not at the reference quarter, so the walk enters its log-odds too.
DOMINANT = ("west", "us", "defence", 6)  # group, counterpart, domain, quarter index (2021Q3)
DOMINANT_EVENTS = 3000
DOMINANT_SHARE = 0.8  # its cooperative share


def _date(quarter: int, rng: np.random.Generator) -> str:
    year, q = 2020 + quarter // 4, quarter % 4
    return f"{year}-{3 * q + 1 + int(rng.integers(0, 3)):02d}-{int(rng.integers(1, 29)):02d}"


def dominant_cell_study(directory: Path, seed: int, n_dominant: int = DOMINANT_EVENTS) -> Path:
    """Write the dominant-cell study and its events (drawn with ``seed``); return the study path."""
    rng = np.random.default_rng([17, seed])
    study = base_study()
    study["study"]["name"] = "dominant_cell"
    study["time"].update(start=START, end=END, reference=REFERENCE)
    study["domains"] = [{"id": d, "label": d.title()} for d in DOMAINS]
    study["hypotheses"] = [
        hypothesis("steady", 0.34),
        hypothesis(
            "shift",
            0.33,
            {
                "tilt": {"all": prior("Normal", mu=1.5, sigma=0.5)},
                "spread": {"all": prior("HalfNormal", sigma=0.5)},
                "trend": {"all": prior("Normal", mu=0.2, sigma=0.15)},
                "volatility": {"all": prior("HalfNormal", sigma=0.15)},
            },
        ),
        hypothesis(
            "split",
            0.33,
            {
                "tilt": {"west": prior("Normal", mu=-0.5, sigma=0.75), "east": prior("Normal", mu=0.5, sigma=0.75)},
                "spread": {"all": prior("HalfNormal", sigma=1.5)},
                "trend": {"all": prior("Normal", mu=0.0, sigma=0.1)},
                "volatility": {"all": prior("HalfNormal", sigma=0.15)},
            },
        ),
    ]
    rows = []
    group, counterpart, domain, quarter = DOMINANT
    for _ in range(n_dominant):
        coop = rng.random() < DOMINANT_SHARE
        rows.append((counterpart, domain, quarter, coop))
    # A handful of events in the other cells: 0-2 per (counterpart group, domain, quarter).
    for who in ("us", "eu", "russia"):
        share = 0.3 if who == "russia" else 0.7
        for d in DOMAINS:
            for t in range(N_QUARTERS):
                for _ in range(int(rng.poisson(0.35 if who != "russia" else 0.6))):
                    rows.append((who, d, t, rng.random() < share))
    events = [
        event(
            i,
            counterpart=who,
            domain=d,
            event_date=_date(t, rng),
            outcome="cooperative" if coop else "conflictual",
            intensity="3" if coop else "-3",
            reliability=str(rng.choice(["A1", "B2", "C3"])),
        )
        for i, (who, d, t, coop) in enumerate(rows, start=1)
    ]
    write_events(Path(directory) / "events.csv", events)
    return write_study(directory, study)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_dominant_cell_with_weak_others_passes_the_gate_without_retry(tmp_path, seed):
    """At the default settings (4 chains x 1500 draws): no divergence, R-hat and ESS within the
    gate, a marginal likelihood the gate trusts, on the first attempt, for every hypothesis."""
    from forecast.data.cells import cell_data
    from forecast.data.observations import load_observations
    from forecast.fit.hypothesis import fit_hypothesis
    from forecast.fit.sampler import StudyModel
    from forecast.settings import SamplerSettings
    from forecast.spec.study import load_study

    study = load_study(dominant_cell_study(tmp_path, seed))
    cells = cell_data(load_observations(study).table, study)
    model = StudyModel(study, cells)
    # the case it is about: the dominant domain is centred, the group's others and the other group not
    assert model.centring.domain.tolist() == [[True, False, False, False], [False] * 4]
    for h in study.hypotheses:
        result = fit_hypothesis(model, h, SamplerSettings(seed=seed), with_loo=False)
        fit, d = result.fit, result.fit.diagnostics
        assert fit.attempts == 1 and d.converged, f"seed {seed}, '{h.id}': {'; '.join(d.problems)}"
        assert d.divergences == 0
