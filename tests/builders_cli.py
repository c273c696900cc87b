"""Argument lists for running commands through click's CliRunner in tests."""

from __future__ import annotations

from pathlib import Path


def calibrate_args(
    study: Path,
    runs_dir: Path,
    *,
    datasets: int,
    n_events: int,
    seed: int | None = None,
    extra: tuple[str, ...] = (),
) -> list[str]:
    """`forecast calibrate STUDY` on ``datasets`` data sets of ``n_events`` events each, with tiny
    sampler settings (1000 draws, 1000 tuning steps, 2 chains), in this process (--workers 0),
    runs under ``runs_dir``, quiet; ``seed`` when given, then ``extra`` options."""
    args = ["calibrate", str(study), "--datasets", str(datasets), "--n", str(n_events)]
    args += ["--draws", "1000", "--tune", "1000", "--chains", "2"]
    if seed is not None:
        args += ["--seed", str(seed)]
    return [*args, "--workers", "0", "--runs-dir", str(runs_dir), "-q", *extra]
