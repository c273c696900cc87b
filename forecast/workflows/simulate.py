"""`forecast simulate`: synthetic observations drawn from what a hypothesis predicts.

"What would the data look like if H were true?" One draw of the model's parameters is taken
from the hypothesis's prior (the prior predictive) or from its posterior in the latest run (the
posterior predictive); every simulated event then gets a cooperative or conflictual outcome
with the probability the model gives its (group, domain, quarter) cell.

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
import os
import re
import shutil
import tomllib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.special import expit

from forecast.data.cells import cell_data
from forecast.data.observations import load_observations
from forecast.errors import InputError, RunStoreError
from forecast.model.build import draws_as_arrays, latent_logit, years_from_reference
from forecast.runs.store import POSTERIOR_DIR, default_root, dumps, fsync, latest_run
from forecast.settings import DEFAULT_SEED, derive_rng
from forecast.spec.study import Hypothesis, Study, load_study
from forecast.workflows.priors import prior_draws

SIMULATIONS = "simulations"
SOURCES = ("prior", "posterior")
DESIGN_COLUMNS = ("counterpart", "domain", "event_date", "report_date", "reliability")


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


def cooperation_probability(study: Study, params: dict[str, np.ndarray], design: pd.DataFrame) -> np.ndarray:
    """P(cooperative) of each design row under one parameter draw (arrays without a sample axis)."""
    return cooperation_probability_draws(study, {k: v[None] for k, v in params.items()}, design)[0]


def cooperation_probability_draws(study: Study, params: dict[str, np.ndarray], design: pd.DataFrame) -> np.ndarray:
    """P(cooperative) of each design row under each of many parameter draws: (draws, rows)."""
    eta = latent_logit(
        np, params, years_from_reference(study), study.time.reference - study.time.start, study.time.components
    )
    gidx = {c: i for i, g in enumerate(study.groups) for c in g.counterparts}
    didx = {d.id: i for i, d in enumerate(study.domains)}
    dates = pd.to_datetime(design["event_date"])
    t = (dates.dt.year * 4 + (dates.dt.month - 1) // 3).to_numpy() - study.time.start
    return expit(eta[:, design["counterpart"].map(gidx).to_numpy(), design["domain"].map(didx).to_numpy(), t])


def simulate_outcomes(
    study: Study, params: dict[str, np.ndarray], design: pd.DataFrame, rng: np.random.Generator
) -> np.ndarray:
    """Cooperative (True) or conflictual outcomes for the design rows under one parameter draw."""
    return rng.uniform(size=len(design)) < cooperation_probability(study, params, design)


def one_prior_draw(study: Study, hypothesis: Hypothesis, rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {k: v[0] for k, v in prior_draws(study, hypothesis, 1, rng).items()}


def one_posterior_draw(study: Study, run_dir: Path, hypothesis: Hypothesis, rng: np.random.Generator):
    """A random draw of the hypothesis's posterior in a run; also its (chain, draw) index."""
    import xarray as xr

    path = run_dir / POSTERIOR_DIR / f"{hypothesis.id}.nc"
    if not path.is_file():
        raise RunStoreError(f"{run_dir}: no posterior for hypothesis '{hypothesis.id}' ({POSTERIOR_DIR}/{path.name})")
    tree = xr.open_datatree(path, engine="h5netcdf")
    arrays = draws_as_arrays(tree.posterior, study)
    chains, draws = tree.posterior.sizes["chain"], tree.posterior.sizes["draw"]
    tree.close()
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


def synthetic_study_text(study: Study, hypothesis_id: str, observations: str = "observations.csv") -> str:
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


@dataclass
class SimulationResult:
    data: dict

    def to_dict(self) -> dict:
        return self.data


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
    """Simulate one synthetic data set from a hypothesis's prior or posterior predictive and write it."""
    today = today or dt.date.today()
    if source not in SOURCES:
        raise InputError(f"--from: '{source}' is not one of 'prior', 'posterior'")
    if n is not None and n < 1:
        raise InputError(f"--n must be at least 1, got {n}")
    study = load_study(study_path)
    h = study.hypothesis(hypothesis)
    rng = derive_rng(seed, 7)
    root = runs_root or study.runs_path or default_root()
    run = None
    try:
        run = latest_run(root, study.name)
    except RunStoreError:
        if source == "posterior":
            raise
    if n is None:
        design = study_design(study, load_observations(study, today=today).table)
    else:
        if not re.fullmatch(r"[A-F][1-6]|0?\.\d+|1(\.0*)?", reliability.strip().upper()):
            raise InputError(
                f"--reliability: '{reliability}' is not an Admiralty grade like 'B2' or a weight in (0, 1]"
            )
        design = uniform_design(study, n, rng, reliability, today)
    if source == "prior":
        params, where = one_prior_draw(study, h, rng), None
    else:
        params, where = one_posterior_draw(study, run, h, rng)
    cooperative = simulate_outcomes(study, params, design, rng)
    label = f"hypothesis '{h.id}', {source} predictive, seed {seed}"
    table = synthetic_table(design, cooperative, label)

    if out is None:
        base = (run / SIMULATIONS) if run is not None else Path(root) / study.name / SIMULATIONS
        out = base / f"{h.id}-{source}-seed{seed}"
    out = Path(out)
    if out.resolve() == study.observations_path.parent.resolve():
        raise InputError(f"--out {out}: that is the study's data directory; synthetic events are kept out of it")
    if out.exists() and any(out.iterdir()):
        raise InputError(f"--out {out}: the directory exists and is not empty; choose another")
    truth = {
        name: np.asarray(v).tolist() for name, v in params.items()
    }  # the parameter values the data were drawn from
    summary = {
        "study": study.name,
        "hypothesis": h.id,
        "source": source,
        "seed": seed,
        "synthetic": True,
        "n_events": int(len(table)),
        "n_cooperative": int(cooperative.sum()),
        "design": "study observations" if n is None else f"{n} events uniform over counterparts, domains, quarters",
        "posterior_draw": None if where is None else {"chain": int(where[0]), "draw": int(where[1])},
        "parameters": truth,
        "out_dir": str(out.resolve()),
        "observations": str((out / "observations.csv").resolve()),
        "study_file": str((out / "study.toml").resolve()),
        "run_dir": str(run) if run is not None else None,
    }
    _write_dir(
        out,
        {
            "observations.csv": table.to_csv(index=False, lineterminator="\n"),
            "study.toml": synthetic_study_text(study, h.id),
            "simulation.json": dumps(summary) + "\n",
        },
    )
    # The copy must validate as written: the simulated events are in the observation format.
    sim_study = load_study(out / "study.toml")
    load_observations(sim_study, today=today)
    return SimulationResult(summary)


def _write_dir(out: Path, files: dict[str, str]) -> None:
    """Write ``files`` into a hidden sibling directory, fsync, and rename it to ``out`` at once."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        for name, text in files.items():
            (tmp / name).write_text(text, encoding="utf-8")
            fsync(tmp / name)
        fsync(tmp)
        if out.exists():
            out.rmdir()  # empty, checked by the caller
        os.rename(tmp, out)
        fsync(out.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def render(result: SimulationResult) -> str:
    d = result.to_dict()
    share = d["n_cooperative"] / d["n_events"] if d["n_events"] else float("nan")
    return "\n".join(
        [
            f"Simulated {d['n_events']} SYNTHETIC events from hypothesis '{d['hypothesis']}' ({d['source']} predictive, "
            f"seed {d['seed']}): {share:.0%} cooperative.",
            f"  events:     {d['observations']}",
            f"  study copy: {d['study_file']}  (study '{d['study']}__sim_{d['hypothesis']}')",
            f"Fit it with: forecast update {d['study_file']}",
        ]
    )
