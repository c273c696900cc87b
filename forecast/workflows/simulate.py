"""`forecast simulate`: synthetic observations drawn from what a hypothesis predicts.

"What would the data look like if H were true?" One draw of the model's parameters is taken
from the hypothesis's prior (the prior predictive) or from its posterior in the latest run, which
must match the current inputs (the posterior predictive); every simulated event then gets a
cooperative or conflictual outcome with the probability the model gives its (group, domain,
quarter) cell.

The *design* (which counterparts, domains, dates and reliability grades the events have) is, by
default, the study's own observations, so a simulated data set has the study's size and shape
(reports that corroborate an event already counted are left out: the likelihood counts them
once). ``n`` draws that many events instead, spread evenly at random over the counterparts,
domains and the study's window.

Simulated events are labelled synthetic everywhere: ids ``SIM-...``, a description and source
saying so, and a ``note_synthetic`` column. They are written with a copy of the study that reads
them (renamed ``<study>__sim_<hypothesis>``, so its runs never mix with the real study's), to a
directory of their own, never to the study's data directory.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from forecast.data.cells import cell_data, evidence_table
from forecast.data.observations import load_observations
from forecast.errors import InputError, RunStoreError, allowed_list, did_you_mean
from forecast.model.build import draws_as_arrays
from forecast.model.predictive import one_prior_draw, simulate_outcomes
from forecast.model.record import concentration_draws
from forecast.runs.layout import SIMULATIONS  # noqa: E402
from forecast.runs.store import atomic_write_with, default_root, dumps, fsync
from forecast.runs.stored import StoredRun
from forecast.settings import DEFAULT_SEED, derive_rng
from forecast.spec.study import CONCENTRATION, Hypothesis, Study, load_study

SIMULATED_OBSERVATIONS = "observations.csv"
SIMULATED_STUDY = "study.toml"
SIMULATION = "simulation.json"
SOURCES = ("prior", "posterior")


def quarter_dates(study: Study, quarter: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A uniformly random day inside each given quarter index (year * 4 + q)."""
    year, q = quarter // 4, quarter % 4
    start = pd.to_datetime({"year": year, "month": 3 * q + 1, "day": 1})
    end = start + pd.DateOffset(months=3)
    days = ((end - start).dt.days).to_numpy()
    offset = np.floor(rng.uniform(size=len(quarter)) * days).astype(int)
    return (start + pd.to_timedelta(offset, unit="D")).to_numpy()


def uniform_design(
    study: Study, n: int, rng: np.random.Generator, reliability: str = "A1", today: dt.date | None = None
) -> pd.DataFrame:
    """``n`` events spread uniformly over counterparts, domains and the study's quarters (to today)."""
    today = today or dt.date.today()
    counterparts = [c for g in study.groups for c in g.counterparts]
    domains = [d.id for d in study.domains]
    last = min(study.time.end, today.year * 4 + (today.month - 1) // 3)
    if last < study.time.start:
        raise InputError(f"study '{study.name}' starts after today: no date to simulate events on")
    quarters = rng.integers(study.time.start, last + 1, size=n)
    dates = pd.Series(quarter_dates(study, quarters, rng))
    dates = dates.where(dates <= pd.Timestamp(today), pd.Timestamp(today))
    return pd.DataFrame(
        {
            "counterpart": rng.choice(counterparts, size=n),
            "domain": rng.choice(domains, size=n),
            "event_date": dates.dt.strftime("%Y-%m-%d").to_numpy(),
            "report_date": "",
            "reliability": reliability,
        }
    )


def study_design(study: Study, table: pd.DataFrame) -> pd.DataFrame:
    """The study's own observations as a design: the counted rows' counterparts, domains, dates, grades."""
    if table.empty:
        raise InputError(
            f"study '{study.name}' has no observations to copy the design from; give the number of events (--n)"
        )
    table = evidence_table(table, study)  # the rows the study counts as evidence ([evidence] initiators)
    counted = cell_data(table, study).event_counted
    t = table[counted]
    return pd.DataFrame(
        {
            "counterpart": t["counterpart"].to_numpy(),
            "domain": t["domain"].to_numpy(),
            "event_date": t["event_date"].dt.strftime("%Y-%m-%d").to_numpy(),
            "report_date": np.where(t["report_date"] > t["event_date"], t["report_date"].dt.strftime("%Y-%m-%d"), ""),
            "reliability": t["reliability"].to_numpy(),
        }
    )


def one_posterior_draw(study: Study, run: StoredRun, hypothesis: Hypothesis, rng: np.random.Generator):
    """A random draw of the hypothesis's posterior in a run; also its (chain, draw) index.

    An overdispersed study's draw includes the concentration at the same index (the cells' shares
    are then drawn from their Beta around p by ``simulate_outcomes``).
    """
    post = run.open_posterior(hypothesis.id)
    arrays = draws_as_arrays(post, study)
    phi = concentration_draws(post, study)
    if phi is not None:
        arrays[CONCENTRATION] = phi
    chains, draws = post.sizes["chain"], post.sizes["draw"]
    k = int(rng.integers(chains * draws))
    return {name: a[k] for name, a in arrays.items()}, (k // draws, k % draws)


def synthetic_table(design: pd.DataFrame, cooperative: np.ndarray, label: str, id_prefix: str = "SIM") -> pd.DataFrame:
    """Simulated events in the observation format, labelled synthetic in every row."""
    n = len(design)
    width = max(6, len(str(n)))
    outcome = np.where(cooperative, "cooperative", "conflictual")
    return pd.DataFrame(
        {
            "id": [f"{id_prefix}-{i:0{width}d}" for i in range(1, n + 1)],
            "event_date": design["event_date"].to_numpy(),
            "report_date": design["report_date"].to_numpy(),
            "counterpart": design["counterpart"].to_numpy(),
            "domain": design["domain"].to_numpy(),
            "outcome": outcome,
            "intensity": "",
            "reliability": design["reliability"].to_numpy(),
            "description": [f"SYNTHETIC {o} event ({label}); not a real event" for o in outcome],
            "source": "forecast simulate (synthetic)",
            "origin_id": "",
            "note_synthetic": f"synthetic: {label}",
        }
    )


# --- a study file that reads the simulated events ---------------------------------------------------


def _toml_key(k: str) -> str:
    return k if re.fullmatch(r"[A-Za-z0-9_-]+", k) else json.dumps(k)


def _toml_value(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{_toml_key(k)} = {_toml_value(x)}" for k, x in v.items()) + " }" if v else "{}"
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {type(v).__name__} as TOML")


def to_toml(data: dict) -> str:
    """A study's parsed TOML written back (tables and arrays of tables; comments are not kept)."""
    lines: list[str] = []
    for name, section in data.items():
        if isinstance(section, dict):
            lines.append(f"[{_toml_key(name)}]")
            lines += [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in section.items()]
            lines.append("")
        elif isinstance(section, list) and section and all(isinstance(x, dict) for x in section):
            for item in section:
                lines.append(f"[[{_toml_key(name)}]]")
                lines += [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in item.items()]
                lines.append("")
        elif isinstance(section, list) and not section:
            continue
        else:
            lines.insert(0, f"{_toml_key(name)} = {_toml_value(section)}")
    return "\n".join(lines) + "\n"


def synthetic_study_text(study: Study, hypothesis_id: str, observations: str = SIMULATED_OBSERVATIONS) -> str:
    """The study file, renamed and pointed at the simulated observations."""
    raw = tomllib.loads(study.path.read_text(encoding="utf-8"))
    raw["study"]["name"] = f"{study.name}__sim_{hypothesis_id}"
    raw["study"]["question"] = f"[SYNTHETIC DATA from hypothesis '{hypothesis_id}'] " + raw["study"]["question"]
    raw["study"]["observations"] = observations
    raw["study"].pop("runs", None)
    header = (
        f"# Synthetic copy of {study.path.name} written by `forecast simulate`: it reads simulated\n"
        f"# events (hypothesis '{hypothesis_id}'), not real ones.\n"
    )
    return header + to_toml(raw)


# --- the command ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PosteriorDraw:
    chain: int
    draw: int


@dataclass(frozen=True)
class SimulationResult:
    """One synthetic data set written by `forecast simulate`, and the parameters it was drawn from."""

    study: str
    hypothesis: str
    source: str  # "prior" or "posterior"
    seed: int
    synthetic: bool
    n_events: int
    n_cooperative: int
    design: str
    posterior_draw: PosteriorDraw | None  # which stored draw, for the posterior predictive
    parameters: dict[str, list]  # the parameter values the data were drawn from
    out_dir: str
    observations: str
    study_file: str
    run_dir: str | None

    @property
    def cooperative_share(self) -> float:
        return self.n_cooperative / self.n_events if self.n_events else float("nan")

    def to_dict(self) -> dict:
        return asdict(self)


def _hypothesis(study: Study, hypothesis: str) -> Hypothesis:
    """The study's hypothesis ``hypothesis``, or an InputError (exit 2) listing the study's hypotheses."""
    ids = [h.id for h in study.hypotheses]
    if hypothesis not in ids:
        shown = hypothesis if len(hypothesis) <= 80 else hypothesis[:77] + "..."
        raise InputError(
            f"-H/--hypothesis: study '{study.name}' has no hypothesis '{shown}'{did_you_mean(hypothesis, ids)}; "
            f"its hypotheses are {allowed_list(ids)}"
        )
    return study.hypothesis(hypothesis)


def run_simulate(
    study_path: str | Path,
    hypothesis: str,
    *,
    source: str = "prior",
    n: int | None = None,
    seed: int = DEFAULT_SEED,
    out: Path | None = None,
    runs_root: Path | None = None,
    reliability: str = "A1",
    today: dt.date | None = None,
) -> SimulationResult:
    """Simulate one synthetic data set from a hypothesis's prior or posterior predictive and write it.

    The posterior predictive reads the study's latest run, which must match the current inputs
    (``StoredRun.check_inputs``); the prior predictive uses a run, if there is one, only as the
    default place for the output.
    """
    today = today or dt.date.today()
    if source not in SOURCES:
        raise InputError(f"--from: '{source}' is not one of 'prior', 'posterior'")
    if n is not None and n < 1:
        raise InputError(f"--n must be at least 1, got {n}")
    study = load_study(study_path)
    h = _hypothesis(study, hypothesis)
    if n is not None and not re.fullmatch(r"[A-F][1-6]|0?\.\d+|1(\.0*)?", reliability.strip().upper()):
        raise InputError(
            f"--reliability: '{reliability[:80]}' is not an Admiralty grade like 'B2' or a weight in (0, 1]"
        )
    rng = derive_rng(seed, 7)
    root = runs_root or study.runs_path or default_root()
    run = None
    try:
        run = StoredRun.find(study=study, runs_root=root)
    except RunStoreError:
        if source == "posterior":
            raise
    obs = load_observations(study, today=today) if n is None or source == "posterior" else None
    if source == "posterior":
        run.check_inputs(study, obs.sha256)
    design = study_design(study, obs.table) if n is None else uniform_design(study, n, rng, reliability, today)
    if source == "prior":
        params, where = one_prior_draw(study, h, rng), None
    else:
        params, where = one_posterior_draw(study, run, h, rng)
    cooperative = simulate_outcomes(study, params, design, rng)
    label = f"hypothesis '{h.id}', {source} predictive, seed {seed}"
    table = synthetic_table(design, cooperative, label)

    if out is None:
        base = (run.path / SIMULATIONS) if run is not None else Path(root) / study.name / SIMULATIONS
        out = base / f"{h.id}-{source}-seed{seed}"
    out = Path(out)
    if out.resolve() == study.observations_path.parent.resolve():
        raise InputError(f"--out {out}: that is the study's data directory; synthetic events are kept out of it")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(f"--out {out}: the directory exists and is not empty; choose another")
    result = SimulationResult(
        study=study.name,
        hypothesis=h.id,
        source=source,
        seed=seed,
        synthetic=True,
        n_events=int(len(table)),
        n_cooperative=int(cooperative.sum()),
        design="study observations" if n is None else f"{n} events uniform over counterparts, domains, quarters",
        posterior_draw=None if where is None else PosteriorDraw(chain=int(where[0]), draw=int(where[1])),
        parameters={name: np.asarray(v).tolist() for name, v in params.items()},
        out_dir=str(out.resolve()),
        observations=str((out / SIMULATED_OBSERVATIONS).resolve()),
        study_file=str((out / SIMULATED_STUDY).resolve()),
        run_dir=str(run.path) if run is not None else None,
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    files = {
        SIMULATED_OBSERVATIONS: table.to_csv(index=False, lineterminator="\n"),
        SIMULATED_STUDY: synthetic_study_text(study, h.id),
        SIMULATION: dumps(result) + "\n",
    }
    atomic_write_with(out, lambda tmp: _write_directory(tmp, files))
    # The copy must validate as written: the simulated events are in the observation format.
    sim_study = load_study(out / SIMULATED_STUDY)
    load_observations(sim_study, today=today)
    return result


def _write_directory(path: Path, files: dict[str, str]) -> None:
    """The writer ``atomic_write_with`` renames into place: a directory of fsynced files.

    It removes what it wrote if it fails part-way, so nothing is left behind.
    """
    path.mkdir()
    try:
        for name, text in files.items():
            (path / name).write_text(text, encoding="utf-8")
            fsync(path / name)
    except BaseException:
        for name in files:
            (path / name).unlink(missing_ok=True)
        path.rmdir()
        raise
