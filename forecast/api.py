"""The Python API for notebooks: load a study, fit it, open a run, read its results as pandas.

    import forecast
    study = forecast.load_study("priors/turkey_nato.toml")
    run = forecast.update(study.path, seed=1)
    run.to_dataframe()                 # the support table, one row per hypothesis
    run.posterior("hedging")           # that hypothesis's posterior as an xarray.DataTree
    run.constraints                    # the constraint hypotheses' comparison (constraints.json), or None
    run.posterior("encompassing")      # the encompassing model's fit behind it

Everything here calls the same workflows as the command line, so the numbers are the same for the
same inputs and seed; errors are the toolkit's own (``forecast.ForecastError`` and subclasses).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from forecast.runs.stored import StoredRun
from forecast.settings import DEFAULT_SEED, Progress, SamplerSettings, default_study
from forecast.spec.study import Study
from forecast.spec.study import load_study as _load_study

if TYPE_CHECKING:
    import pandas as pd
    import xarray as xr

    from forecast.data.observations import Observations
    from forecast.workflows.update import UpdateResult


def _study_path(study: str | Path | Study | None) -> Path:
    if isinstance(study, Study):
        return Path(study.path)
    if study is None:
        return default_study()
    return Path(study)


def load_study(path: str | Path | None = None) -> Study:
    """A validated study (``priors/turkey_nato.toml`` by default); InputError lists every problem."""
    return _load_study(_study_path(path))


def load_observations(study: str | Path | Study | None = None) -> Observations:
    """The study's observations, validated; ``.table`` is a pandas DataFrame."""
    from forecast.data.observations import load_observations as _load

    return _load(study if isinstance(study, Study) else load_study(study))


@dataclass(frozen=True)
class Run:
    """A stored run, opened for analysis: its support table, posteriors and analysis files."""

    stored: StoredRun
    result: UpdateResult | None = None  # set when the run was just fitted in this session

    @property
    def path(self) -> Path:
        return self.stored.path

    @property
    def converged(self) -> bool:
        return self.stored.converged

    @property
    def conclusion(self) -> str:
        return str(self.stored.summary.get("conclusion", ""))

    @property
    def hypotheses(self) -> list[str]:
        return self.stored.hypothesis_ids

    def to_dataframe(self) -> pd.DataFrame:
        """The support table: one row per hypothesis (probabilities, log ML, LOO, diagnostics)."""
        import pandas as pd

        rows = []
        for h in self.stored.summary.get("hypotheses", []):
            row = {k: v for k, v in h.items() if not isinstance(v, dict | list)}
            row.update({f"diagnostics.{k}": v for k, v in h.get("diagnostics", {}).items() if not isinstance(v, list)})
            rows.append(row)
        frame = pd.DataFrame(rows).set_index("id")
        return frame.astype({c: float for c in frame.columns if frame[c].dtype == object and c.endswith("_se")})

    @property
    def constraints(self) -> dict | None:
        """The constraint hypotheses compared on one encompassing fit, with ``"agreement"`` (whether
        that comparison favours the same hypothesis as the prior-specified one); None when the
        study states no ``[[constraint_hypotheses]]``."""
        from forecast.runs.layout import CONSTRAINTS, CONSTRAINTS_SCHEMA

        return self.stored.read_json(CONSTRAINTS, CONSTRAINTS_SCHEMA)

    def posterior(self, hypothesis: str) -> xr.DataTree:
        """One hypothesis's stored posterior (groups ``posterior`` and ``sample_stats``); ``"encompassing"``
        is the encompassing model's fit when the run compared constraint hypotheses."""
        from forecast.spec.constraints import ENCOMPASSING_ID

        known = self.hypotheses + ([ENCOMPASSING_ID] if self.constraints is not None else [])
        if hypothesis not in known:
            from forecast.errors import InputError, allowed_list

            raise InputError(f"no hypothesis '{hypothesis}' in run {self.path.name}; {allowed_list(known)}")
        return self.stored.open_tree(hypothesis)

    @property
    def posteriors(self) -> dict[str, xr.DataTree]:
        return {h: self.posterior(h) for h in self.hypotheses}

    def analysis(self, name: str) -> dict | None:
        """An analysis file the run holds (e.g. ``"forecasts.json"``), or None."""
        return self.stored.read_json(name)


def load_run(
    run: str | Path | None = None, *, study: str | Path | Study | None = None, runs_dir: str | Path | None = None
) -> Run:
    """A run directory, or the latest run of ``study`` (the default study when both are None)."""
    if run is not None:
        return Run(StoredRun.find(Path(run)))
    return Run(StoredRun.find(None, study=load_study(study), runs_root=Path(runs_dir) if runs_dir else None))


def update(
    study: str | Path | Study | None = None,
    *,
    seed: int = DEFAULT_SEED,
    draws: int = SamplerSettings.draws,
    tune: int = SamplerSettings.tune,
    chains: int = SamplerSettings.chains,
    cores: int = SamplerSettings.cores,
    runs_dir: str | Path | None = None,
    allow_unconverged: bool = False,
    robustness: bool = True,
    progress: Progress | None = None,
) -> Run:
    """Fit every hypothesis (``forecast update``), write the run, and return it opened.

    A study with ``[[constraint_hypotheses]]`` also gets their comparison on one encompassing fit
    (``run.constraints``; ``run.result.constraints`` is the typed record).

    ``robustness=False`` skips the robustness over the study's class of reasonable priors
    (``--no-robustness``); the support figures are the same either way.
    """
    from forecast.workflows.update import run_update

    settings = SamplerSettings(draws=draws, tune=tune, chains=chains, cores=cores, seed=seed)
    result = run_update(
        _study_path(study),
        settings,
        runs_root=Path(runs_dir) if runs_dir else None,
        allow_unconverged=allow_unconverged,
        robustness=robustness,
        progress=progress,
    )
    return Run(StoredRun.open(Path(result.run_dir)), result)


__all__ = ["Run", "load_observations", "load_run", "load_study", "update"]
