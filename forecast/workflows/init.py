"""`forecast init NAME`: a commented study file and an empty observation file that validate.

The study's hypotheses state their priors as elicitation statements (forecast.spec.elicitation):
cooperative shares and their change per year with a stated certainty, the terms an analyst can
judge and defend, rather than distributions on the model's log-odds scale. A commented ``[model]``
section says when to set ``overdispersion = "cell"`` (observations from machine-coded feeds).
"""

from __future__ import annotations

import re
from pathlib import Path

from forecast.data.observations import COLUMNS
from forecast.errors import InputError
from forecast.spec.priors import shown
from forecast.spec.study import INITIATORS, MAX_ID_LENGTH

STUDY_TEMPLATE = """# Study "{name}". Every key is explained in the README ("Study files").
#
# Priors are stated in your own terms: how sure you are that a cooperative share, or its
# change per year, lies in a range. Each statement is turned into a distribution on the model's
# scale (`forecast priors` shows both). The statements (README, "Priors in your own terms"):
#   share_between = [lo, hi]           tilt: the cooperative share with a group (typical domain)
#   share_change_between = [lo, hi]    trend: the share changes by lo..hi per year (0.05 = 5 points)
#   share_moves_at_most = x            trend: the share moves by at most x per year, up or down
#   share_sd_at_most = x               spread: one SD of the domains moves the share by at most x
#                                      volatility: one quarter's SD swing moves it by at most x
#   between = [lo, hi]                 any hyperparameter, on the model's own scale
# Options: mass (how sure, default 0.9), dist (the family fitted, e.g. "StudentT"), nu (its
# degrees of freedom), reference_share (the share a change starts from; default: where this
# hypothesis's tilt puts it), says (your own words, kept with the prior).
# A prior may also be a distribution on the model's scale, e.g.
#   tilt.partner = {{ dist = "Normal", kwargs = {{ mu = 1.0, sigma = 0.75 }} }}
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

# How the events of one cell (a group, a domain, a quarter) share evidence. By default
# ("none") every event is independent evidence. With "cell" a cell's cooperative share varies
# around the model's probability, so one cell carries at most about concentration + 1 events'
# worth of evidence: set it when the observations come from machine-coded feeds (`forecast
# import`: GDELT, ICEWS, POLECAT), which report one event many times. The concentration's prior
# defaults to a median of 20 (90% between about 4 and 100); README, "Study files".
# [model]
# overdispersion = "cell"

[[domains]]
id = "security"
label = "Security"

[[domains]]
id = "economy"
label = "Economy and trade"

# Both hypotheses agree on where relations stand at the reference quarter and on how much
# domains and quarters differ; they disagree on the trend, which is what the evidence tests.
[[hypotheses]]
id = "status_quo"
label = "Status quo"
prior_probability = 0.5
claim = "Relations stay as they are: no trend with anyone."

[hypotheses.priors]
tilt.partner = {{ share_between = [0.6, 0.9], mass = 0.9, says = "Most dealings with the partner are cooperative" }}
tilt.rival = {{ share_between = [0.3, 0.7], mass = 0.9, says = "Dealings with the rival are mixed" }}
spread.all = {{ share_sd_at_most = 0.15, mass = 0.8 }}
trend.all = {{ share_moves_at_most = 0.03, mass = 0.9, says = "No drift: at most 3 points a year either way" }}
volatility.all = {{ share_sd_at_most = 0.05, mass = 0.9 }}

[[hypotheses]]
id = "shift"
label = "Shift towards the rival"
prior_probability = 0.5
claim = "Cooperation with the rival rises and cooperation with the partner falls."

[hypotheses.priors]
tilt.partner = {{ share_between = [0.6, 0.9], mass = 0.9 }}
tilt.rival = {{ share_between = [0.3, 0.7], mass = 0.9 }}
spread.all = {{ share_sd_at_most = 0.15, mass = 0.8 }}
trend.partner = {{ share_change_between = [-0.10, -0.01], mass = 0.8, says = "Cooperation with the partner falls by 1 to 10 points a year" }}
trend.rival = {{ share_change_between = [0.01, 0.10], mass = 0.8, says = "Cooperation with the rival rises by 1 to 10 points a year" }}
volatility.all = {{ share_sd_at_most = 0.05, mass = 0.9 }}
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
