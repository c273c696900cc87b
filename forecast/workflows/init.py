"""`forecast init NAME`: a commented study file and an empty observation file that validate."""

from __future__ import annotations

import re
from pathlib import Path

from forecast.data.observations import COLUMNS
from forecast.errors import InputError
from forecast.spec.priors import shown
from forecast.spec.study import INITIATORS, MAX_ID_LENGTH

STUDY_TEMPLATE = """# Study "{name}". Every key is explained in the README ("Study files").
# Priors are plain data: a distribution from a fixed set and its parameters, e.g.
#   tilt.russia = {{ dist = "Normal", kwargs = {{ mu = 0.5, sigma = 0.75 }} }}
# Scale: tilt is the log-odds that an interaction is cooperative (0 = even odds, 1 = 73%,
# 2 = 88%); spread is how much domains differ; trend is the change in log-odds per year;
# volatility is the size of quarter-to-quarter swings.

[study]
name = "{name}"
question = "State the question the hypotheses answer."
actor = "The actor whose behaviour is studied"
observations = "../data/{name}.csv"   # relative to this file

[time]
step = "quarter"
start = "{start}"
end = "{end}"
components = ["trend", "random_walk"]   # [] for a static model

[[groups]]
id = "partner"
label = "Partner"
counterparts = ["partner_a"]

[[groups]]
id = "rival"
label = "Rival"
counterparts = ["rival_a", "rival_b"]

# Whose acts count as evidence of the actor's alignment (the observations' `initiator` column):
# "actor" (the actor acted), "counterpart" (the counterpart acted on the actor), "joint" (both).
[evidence]
initiators = [{initiators}]

[[domains]]
id = "security"
label = "Security"

[[domains]]
id = "economy"
label = "Economy and trade"

[[hypotheses]]
id = "status_quo"
label = "Status quo"
prior_probability = 0.5
claim = "Relations stay as they are: no trend with anyone."

[hypotheses.priors]
tilt.all = {{ dist = "Normal", kwargs = {{ mu = 0.0, sigma = 1.0 }} }}
spread.all = {{ dist = "HalfNormal", kwargs = {{ sigma = 1.0 }} }}
trend.all = {{ dist = "Normal", kwargs = {{ mu = 0.0, sigma = 0.1 }} }}
volatility.all = {{ dist = "HalfNormal", kwargs = {{ sigma = 0.15 }} }}

[[hypotheses]]
id = "shift"
label = "Shift towards the rival"
prior_probability = 0.5
claim = "Cooperation with the rival rises and cooperation with the partner falls."

[hypotheses.priors]
tilt.all = {{ dist = "Normal", kwargs = {{ mu = 0.0, sigma = 1.0 }} }}
spread.all = {{ dist = "HalfNormal", kwargs = {{ sigma = 1.0 }} }}
trend.partner = {{ dist = "Normal", kwargs = {{ mu = -0.3, sigma = 0.15 }} }}
trend.rival = {{ dist = "Normal", kwargs = {{ mu = 0.3, sigma = 0.15 }} }}
volatility.all = {{ dist = "HalfNormal", kwargs = {{ sigma = 0.15 }} }}
"""


def init_study(name: str, directory: Path, *, start: str = "2015Q1", end: str = "2025Q4") -> tuple[Path, Path]:
    """Write ``priors/NAME.toml`` and ``data/NAME.csv`` under ``directory``; never overwrite."""
    # Stricter than a study name must be (a slug): the name is also the file names' stem.
    if not re.fullmatch(rf"[a-z][a-z0-9_]{{0,{MAX_ID_LENGTH - 1}}}", name):
        raise InputError(
            f"study name {shown(name)} must be lower-case letters, digits and '_', starting with a letter "
            f"(at most {MAX_ID_LENGTH} characters)"
        )
    study = directory / "priors" / f"{name}.toml"
    data = directory / "data" / f"{name}.csv"
    existing = [str(p) for p in (study, data) if p.exists()]
    if existing:
        raise InputError(f"{', '.join(existing)} already exist(s); choose another name or remove them")
    study.parent.mkdir(parents=True, exist_ok=True)
    data.parent.mkdir(parents=True, exist_ok=True)
    initiators = ", ".join(f'"{i}"' for i in INITIATORS)
    study.write_text(STUDY_TEMPLATE.format(name=name, start=start, end=end, initiators=initiators), encoding="utf-8")
    data.write_text(",".join(COLUMNS) + "\n", encoding="utf-8")
    return study, data
