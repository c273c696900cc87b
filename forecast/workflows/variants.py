"""Evidence variants: the same hypotheses and priors, fitted on other choices of whose acts count.

Event data are directed: an observation is the actor's own act, the counterpart's act towards the
actor, or a joint act (the ``initiator`` column). What the counterpart does to the actor (a
sanction, a flight ban) says less about the actor's own alignment than what the actor does. So
`forecast update` also fits every hypothesis on the rows of each variant below that differs from
the study's own choice (``[evidence] initiators``) and shows the posterior probabilities side by
side: a conclusion that holds only when others' acts are counted is worded accordingly by the
reader. The variants reuse the compiled model (other cells, same structure), so each costs one
fit per hypothesis.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from forecast.data.cells import cell_data, evidence_rows
from forecast.data.observations import Observations
from forecast.fit.hypothesis import fit_hypothesis
from forecast.fit.sampler import SamplerSettings, StudyModel
from forecast.settings import Progress
from forecast.spec.study import INITIATORS, Study
from forecast.stats.loo import posterior_probabilities

# (id, initiators counted, label with {actor}); INITIATORS order: actor, counterpart, joint.
VARIANTS: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("all_rows", ("actor", "counterpart", "joint"), "all rows"),
    ("own_and_joint", ("actor", "joint"), "{actor}'s own and joint acts"),
    ("own_only", ("actor",), "{actor}'s own acts only"),
)


@dataclass(frozen=True)
class EvidenceVariant:
    id: str
    label: str
    initiators: tuple[str, ...]
    as_fitted: bool  # the study's own choice: the main table's figures
    n_observations: int
    posterior_probability: dict[str, float]
    posterior_probability_se: dict[str, float]
    log_marginal_likelihood: dict[str, float]
    converged: bool
    problems: tuple[str, ...]

    @property
    def leader(self) -> str:
        return max(self.posterior_probability, key=self.posterior_probability.get)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["initiators"] = list(self.initiators)
        d["problems"] = list(self.problems)
        d["leader"] = self.leader
        return d


def applicable(obs: Observations) -> bool:
    """Variants say something only when the file records who acted, and more than one party did."""
    table = obs.table
    return "initiator" in table and table["initiator"].nunique() > 1


def evidence_variants(
    study: Study,
    obs: Observations,
    model: StudyModel,
    settings: SamplerSettings,
    base: dict[str, tuple[float, float]],
    base_converged: bool,
    progress: Progress | None = None,
) -> list[EvidenceVariant]:
    """Posterior probabilities under each variant; ``base`` holds the study's own fits' (log ML, SE)."""
    say = progress or (lambda _msg: None)
    prior = np.array([h.prior_probability for h in study.hypotheses])
    ids = [h.id for h in study.hypotheses]
    out = []
    for vid, initiators, label in VARIANTS:
        variant_study = dataclasses.replace(study, evidence_initiators=initiators)
        n = int(evidence_rows(obs.table, variant_study).sum())
        own = set(initiators) == set(study.evidence_initiators)
        problems: list[str] = []
        if own:
            log_ml = np.array([base[h][0] for h in ids])
            se = np.array([base[h][1] for h in ids])
            converged = base_converged
        elif n == 0:
            continue
        else:
            say(f"evidence variant '{label.format(actor=study.actor)}': {n} observations")
            cells = cell_data(obs.table, variant_study)
            log_ml, se = np.empty(len(ids)), np.empty(len(ids))
            converged = True
            for i, h in enumerate(study.hypotheses):
                judged = fit_hypothesis(model, h, settings, cells=cells, with_loo=False)
                log_ml[i], se[i] = judged.bridge.log_ml, judged.bridge.se
                if not judged.converged:
                    converged = False
                    problems.append(f"'{h.id}': {'; '.join(judged.fit.diagnostics.problems)}")
        post, post_se = posterior_probabilities(log_ml, se, prior)
        out.append(
            EvidenceVariant(
                id=vid,
                label=label.format(actor=study.actor),
                initiators=tuple(i for i in INITIATORS if i in initiators),
                as_fitted=own,
                n_observations=n,
                posterior_probability={h: float(p) for h, p in zip(ids, post, strict=True)},
                posterior_probability_se={h: float(p) for h, p in zip(ids, post_se, strict=True)},
                log_marginal_likelihood={h: float(x) for h, x in zip(ids, log_ml, strict=True)},
                converged=converged,
                problems=tuple(problems),
            )
        )
    return out


__all__ = ["VARIANTS", "EvidenceVariant", "applicable", "evidence_variants"]
