"""Constraint hypotheses over time: their probabilities after each quarter, from ONE encompassing fit.

A study with ``[[constraint_hypotheses]]`` (forecast.spec.constraints) compares them on one fit
of its encompassing model (forecast.workflows.constraints). Over time that is where they are
cheap: each evaluated quarter needs one encompassing fit, whatever the number of hypotheses, and
the regions' prior masses depend only on the encompassing prior and the regions, so they are
estimated once (with the seed and number of draws `forecast update` uses, so the same masses)
and reused at every point. At each point each hypothesis's Bayes factor against the encompassing
model is the posterior mass of its region (the fraction of that point's draws inside) over its
prior mass, and the posterior probabilities follow (``forecast.stats.encompassing``). The last
quarter sees every observation: with the run's own settings it is the run's stored encompassing
fit (``posterior/encompassing.nc``), so the last point equals the run's constraint comparison.

These probabilities are kept apart from the prior-specified hypotheses' (``ConstraintHistory``
is its own part of ``history.json``, under ``"constraints"``): the two comparisons answer
different questions and are never merged.

What moved it: the draws of the encompassing posterior that fall inside a region are draws of
that constraint hypothesis's posterior (its prior is the encompassing prior restricted to the
region), so the chain-rule attribution of ``forecast.workflows.history.attribution`` applies as it
is, with each hypothesis's draws the encompassing draws inside its region (at the prior point:
independent encompassing prior draws inside it) and its log marginal likelihood, up to the
constant shared by every hypothesis at a point, its log Bayes factor against the encompassing
model. The draws inside a region are not whole chains, so their importance weights are treated
as independent draws (``chains=None``).

An overdispersed study (``[model] overdispersion = "cell"``): the events' terms are the cells'
Polya changes, which need each draw's concentration. The concentration is not constrained by any
region, so a constraint hypothesis's prior for it is the study's concentration prior and its
posterior draws are the encompassing draws' concentrations at the same in-region draws (the
posterior's ``concentration``, flattened as ``draws_as_arrays`` flattens the rest); at the prior
point they are independent draws of the study's concentration prior, one per encompassing prior
draw, drawn after those (so the other draws are the same as without overdispersion).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import numpy as np

from forecast.data.cells import CellData
from forecast.fit.sampler import SamplerSettings, StudyModel
from forecast.model.build import draws_as_arrays
from forecast.model.record import concentration_draws
from forecast.settings import Progress, derive_rng
from forecast.spec.constraints import ENCOMPASSING_ID
from forecast.spec.study import Study, quarter_label
from forecast.stats.encompassing import MIN_HITS, Mass, bayes_factor, mass_from_draws, posterior_probabilities
from forecast.workflows.constraints import (
    METHOD_NOTE,
    PriorDraws,
    Regions,
    constraint_study,
    encompassing_hypothesis,
    prior_masses,
)
from forecast.workflows.history.attribution import PRIOR_DRAWS_FACTOR, Collector, parts_of
from forecast.workflows.history.records import ConstraintHistory, ConstraintPoint

MIN_REGION_DRAWS = 50  # fewer draws inside a region: no attribution through that region at that point


class ConstraintTracker:
    """Follows the constraint hypotheses through ``compute_history``'s quarters.

    Built once per history: validates the study's constraint hypotheses, estimates the regions'
    prior masses once (``seed`` and ``prior_draws`` as `forecast update` uses them: the run's seed,
    the study's ``prior_draws``), and holds the encompassing model (one compile, cell data swapped
    per quarter). ``attribution`` gathers what moved the comparison as the fits are made.
    """

    def __init__(
        self,
        study: Study,
        cells: CellData,
        settings: SamplerSettings,
        *,
        collector: Collector | None = None,
        prior_draws: int | None = None,
        progress: Progress | None = None,
    ):
        t0 = time.perf_counter()
        self.study, self.settings = study, settings
        self.spec = constraint_study(study)
        self.ids = [h.id for h in self.spec.hypotheses]
        self.prior = np.array([h.prior_probability for h in self.spec.hypotheses])
        self.regions = Regions(study, self.spec)
        self.draws = PriorDraws(study, self.spec.priors)
        self.n_prior = prior_draws or self.spec.prior_draws
        self.masses, _ = prior_masses(
            self.regions, self.draws, self.n_prior, derive_rng(settings.seed, "constraints", "prior"), progress
        )
        self.prior_mass_seconds = time.perf_counter() - t0
        self.spent = self.prior_mass_seconds  # the constraint comparison's own time (not the other fits')
        self.enc = encompassing_hypothesis(self.spec)
        self.model = StudyModel(dataclasses.replace(study, hypotheses=(self.enc,)), cells)
        self.collector = collector
        self.points: list[ConstraintPoint] = []

    # --- the points -----------------------------------------------------------------------------

    def prior_point(self, quarter: int, as_of: str) -> ConstraintPoint:
        """Before any evidence: the prior probabilities (every Bayes factor is 1)."""
        t = time.perf_counter()
        ids = self.ids
        point = ConstraintPoint(
            quarter=quarter_label(quarter),
            as_of=as_of,
            n_observations=0,
            new_observations=0,
            source="prior",
            probabilities=dict(zip(ids, map(float, self.prior), strict=True)),
            probabilities_se=dict.fromkeys(ids, 0.0),
            probabilities_upper=dict(zip(ids, map(float, self.prior), strict=True)),
            log_bf=dict.fromkeys(ids, 0.0),
            log_bf_se=dict.fromkeys(ids, 0.0),
            bound=dict.fromkeys(ids),
            posterior_mass={h: float(self.masses[h].value) for h in ids},
            leader=ids[int(np.argmax(self.prior))],
            converged=True,
        )
        self.points.append(point)
        if self.collector is not None:
            n = PRIOR_DRAWS_FACTOR * self.settings.chains * self.settings.draws
            rng = derive_rng(self.settings.seed, "history-attribution", ENCOMPASSING_ID)
            arrays = self.draws.arrays(rng.standard_normal((n, self.draws.dim)))
            # drawn after the others, as ``prior_draws`` does: the parameters' draws do not change
            concentration = self.study.concentration.sample(rng, n) if self.study.overdispersed else None
            self._collect(0, arrays, self.regions.margins(arrays), concentration)
        self.spent += time.perf_counter() - t
        return point

    def reuse(self, quarter: int, as_of: str) -> ConstraintPoint:
        point = dataclasses.replace(self.points[-1], quarter=quarter_label(quarter), as_of=as_of, new_observations=0)
        point = dataclasses.replace(point, source="reused", seconds=0.0)
        self.points.append(point)
        return point

    def fit_point(
        self, j: int, quarter: int, as_of: str, n_known: int, new: int, cells: CellData, progress: Progress | None
    ) -> ConstraintPoint:
        """One encompassing fit on the evidence known by then, and the comparison on its draws."""
        t = time.perf_counter()
        fit = self.model.fit(self.enc, self.settings, cells=cells)
        problems = [] if fit.diagnostics.converged else list(fit.diagnostics.problems or ["failed"])
        return self._point(j, quarter, as_of, n_known, new, "fit", fit.trace.posterior, problems, t)

    def run_point(
        self, j: int, quarter: int, as_of: str, n_known: int, new: int, posterior, problems: list[str]
    ) -> ConstraintPoint:
        """The last quarter from the run's stored encompassing fit."""
        return self._point(j, quarter, as_of, n_known, new, "run", posterior, problems, time.perf_counter())

    def _point(self, j, quarter, as_of, n_known, new, source, posterior, problems, t) -> ConstraintPoint:
        evaluated = evaluate(self, posterior)
        ids = self.ids
        point = ConstraintPoint(
            quarter=quarter_label(quarter),
            as_of=as_of,
            n_observations=n_known,
            new_observations=new,
            source=source,
            probabilities=dict(zip(ids, map(float, evaluated.probabilities), strict=True)),
            probabilities_se=dict(zip(ids, map(float, evaluated.probabilities_se), strict=True)),
            probabilities_upper=dict(zip(ids, map(float, evaluated.probabilities_upper), strict=True)),
            log_bf={h: float(b.log_bf) for h, b in zip(ids, evaluated.bayes_factors, strict=True)},
            log_bf_se={h: float(b.log_bf_se) for h, b in zip(ids, evaluated.bayes_factors, strict=True)},
            bound={h: b.bound for h, b in zip(ids, evaluated.bayes_factors, strict=True)},
            posterior_mass={h: float(m.value) for h, m in zip(ids, evaluated.posterior_masses, strict=True)},
            leader=ids[int(np.argmax(evaluated.probabilities))],
            converged=not problems,
            problems=problems,
            seconds=round(time.perf_counter() - t, 3),
        )
        self.points.append(point)
        if self.collector is not None:
            self._collect(j, evaluated.arrays, evaluated.margins, evaluated.concentration)
        self.spent += time.perf_counter() - t
        return point

    def _collect(
        self,
        j: int,
        arrays: dict[str, np.ndarray],
        margins: dict[str, np.ndarray],
        concentration: np.ndarray | None = None,
    ) -> None:
        """Each hypothesis's draws at point ``j``: the draws inside its region, with their
        concentration draws (``concentration``, aligned with ``arrays``; an overdispersed study's)."""
        for hid in self.ids:
            inside = margins[hid] >= 0
            if inside.sum() < MIN_REGION_DRAWS:
                self.collector.without_draws(j, hid)
            else:
                parts = parts_of({k: v[inside] for k, v in arrays.items()}, self.study)
                phi = None if concentration is None else concentration[inside]
                self.collector.draws(j, hid, parts, None, phi)

    # --- the record -----------------------------------------------------------------------------

    def history(self) -> ConstraintHistory:
        t = time.perf_counter()
        moved = None
        if self.collector is not None and self.points:
            moved = self.collector.attribution([p.as_history_point() for p in self.points])
        self.spent += time.perf_counter() - t
        return ConstraintHistory(
            hypotheses=[
                {
                    "id": h.id,
                    "label": h.label,
                    "claim": h.claim,
                    "constraints": [c.text for c in h.constraints],
                    "complement": h.complement,
                    "prior_probability": float(h.prior_probability),
                }
                for h in self.spec.hypotheses
            ],
            prior_masses={h: self.masses[h].to_dict() for h in self.ids},
            prior_draws=self.n_prior,
            seed=self.settings.seed,
            points=list(self.points),
            seconds=round(self.spent, 2),
            prior_mass_seconds=round(self.prior_mass_seconds, 2),
            method=METHOD_NOTE.format(min_hits=MIN_HITS, n=self.n_prior),
            attribution=moved,
        )


@dataclass(frozen=True)
class Evaluated:
    probabilities: np.ndarray
    probabilities_se: np.ndarray
    probabilities_upper: np.ndarray
    bayes_factors: list
    posterior_masses: list[Mass]
    arrays: dict[str, np.ndarray]
    margins: dict[str, np.ndarray]
    concentration: np.ndarray | None = None  # an overdispersed study's, aligned with ``arrays``


def evaluate(tracker: ConstraintTracker, posterior) -> Evaluated:
    """The comparison on one encompassing posterior (an xarray Dataset with chain, draw), with the
    tracker's prior masses: the same arithmetic and seeds as ``forecast.workflows.constraints.compare``."""
    arrays = draws_as_arrays(posterior, tracker.study)
    n_chains, n_draws = posterior.sizes["chain"], posterior.sizes["draw"]
    margins = tracker.regions.margins(arrays)
    post = [mass_from_draws((margins[h] >= 0).reshape(n_chains, n_draws)) for h in tracker.ids]
    bfs = [bayes_factor(tracker.masses[h], m) for h, m in zip(tracker.ids, post, strict=True)]
    probs, sds, upper = posterior_probabilities(
        bfs, tracker.prior, derive_rng(tracker.settings.seed, "constraints", "probabilities")
    )
    concentration = concentration_draws(posterior, tracker.study)  # flattened as ``arrays`` are
    return Evaluated(probs, sds, upper, bfs, post, arrays, margins, concentration)


__all__ = ["ConstraintHistory", "ConstraintPoint", "ConstraintTracker", "evaluate"]
