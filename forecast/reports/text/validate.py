"""Terminal rendering of `forecast validate`."""

from __future__ import annotations

from pathlib import Path


def render_validate(result) -> str:
    lines = [
        f"{Path(result.study_path).name}: valid; {len(result.hypotheses)} hypotheses ({', '.join(result.hypotheses)})"
        + (
            f"; {len(result.constraint_hypotheses)} constraint hypotheses ({', '.join(result.constraint_hypotheses)})"
            if result.constraint_hypotheses
            else ""
        )
    ]
    lines.append(
        f"{Path(result.observations_path).name}: valid; {result.n_observations} observations"
        + (
            f", latest {result.latest_observation}"
            if result.n_observations
            else " (add coded events before `forecast update`)"
        )
    )
    if result.n_observations:
        lines.append("  by group:     " + ", ".join(f"{k} {v}" for k, v in result.by_group.items()))
        lines.append("  by domain:    " + ", ".join(f"{k} {v}" for k, v in result.by_domain.items()))
        lines.append("  by initiator: " + ", ".join(f"{k} {v}" for k, v in result.by_initiator.items()))
    if len(result.evidence_initiators) < len(result.by_initiator):
        lines.append(
            f"  evidence: only rows with initiator {' or '.join(result.evidence_initiators)} count "
            f"({result.n_evidence} of {result.n_observations}; [evidence] initiators)"
        )
    return "\n".join(lines)
