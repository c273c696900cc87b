"""`forecast validate`: check a study, its questions and its observations without fitting."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from forecast.data.cells import evidence_rows
from forecast.data.observations import load_observations
from forecast.spec.questions import load_questions
from forecast.spec.study import INITIATORS, load_study


@dataclass(frozen=True)
class ValidationResult:
    study: str
    study_path: str
    observations_path: str
    valid: bool
    n_observations: int
    latest_observation: str | None
    hypotheses: list[str]
    # [[constraint_hypotheses]] (with the complement), compared on one encompassing fit.
    constraint_hypotheses: list[str]
    by_group: dict[str, int]
    by_domain: dict[str, int]
    cooperative_share: float | None
    # Who acted (a file without the initiator column counts every row as 'joint').
    by_initiator: dict[str, int]
    # Whose acts count as evidence ([evidence] initiators), and how many rows that leaves.
    evidence_initiators: list[str]
    n_evidence: int

    def to_dict(self) -> dict:
        return asdict(self)


def run_validate(study_path: str | Path) -> ValidationResult:
    """Every check of the study file, its questions and its observations; raises InputError with all problems."""
    study = load_study(study_path)
    load_questions(study)
    obs = load_observations(study)
    t = obs.table
    return ValidationResult(
        study=study.name,
        study_path=str(study.path),
        observations_path=str(obs.path),
        valid=True,
        n_observations=obs.n,
        latest_observation=obs.latest_date,
        hypotheses=[h.id for h in study.hypotheses],
        constraint_hypotheses=[h.id for h in study.constraints.hypotheses] if study.constraints else [],
        by_group={g.id: int((t["group"] == g.id).sum()) for g in study.groups},
        by_domain={d.id: int((t["domain"] == d.id).sum()) for d in study.domains},
        cooperative_share=float(t["cooperative"].mean()) if obs.n else None,
        by_initiator={i: int((t["initiator"] == i).sum()) for i in INITIATORS},
        evidence_initiators=list(study.evidence_initiators),
        n_evidence=int(evidence_rows(t, study).sum()),
    )
