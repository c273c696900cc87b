"""Write the README tour's output from a seeded run of the default study, and check that it is current.

    python tools/readme_tour.py          # rewrite the tour block: `forecast update` twice (about a minute)
    python tools/readme_tour.py --check  # exit 1 if the README's block is stale: one update (about 30 s)

Writing fits the default study (priors/turkey_nato.toml, default seed) in a scratch runs directory,
twice so the compile cache is warm (the same seed then gives the same numbers; see
"Reproducibility"), and replaces the block between the tour markers in README.md with what the
second run printed (support, headline with robustness and confidence, evidence variants).

Checking runs the same seeded update once. nutpie's draws differ between a cold and a warm compile
cache and between machines, so the fresh output is another Monte Carlo realisation of the README's,
not a copy of it. The check therefore fails when the README is stale (the data, the model, the
hypotheses or the wording changed) but not because of Monte Carlo noise. It compares:

1. **The text with every number masked** (a number, with its sign, becomes ``#``; runs of spaces and
   of table rule dashes are collapsed, as column widths follow the numbers), line by line, exactly,
   except these parts whose structure itself follows the draws (each replaced by a placeholder in
   both texts before comparing, and nothing else):

   a. the list of variants in which the leader changes, after "'X' loses the lead in N of M
      variants:" (which variants flip near the boundary, and which are "(within Monte Carlo
      error)"); the sentence up to the colon is compared;
   b. in the headline's "Not robust: 'Y' leads (p) when ...", which variant is named (the flip
      with the most probable new leader) and whether "; the leader changes in k of n variants
      ..." follows (it is printed for k > 1); 'Y' is compared;
   c. in the robustness table, the two variant columns (which variant gives a hypothesis its
      lowest and highest probability);
   d. in the robustness header, "; K refitted where reweighting was unreliable" (how many variants'
      Pareto k called for a refit, absent when none);
   e. in the PSIS-LOO note, "clearly" versus "not clearly (differences within two standard
      errors)", only when in both texts the largest |Δelpd| / SE printed in the support table lies
      within ``LOO_CLEAR_BAND`` of the threshold 2 (it has been seen to cross it between seeds);
   f. in the constraint comparison's scaled-prior lines, whether a scaling was refitted or
      reweighted (its Pareto k lies near 0.7 on the default study), the trailing parenthesis;
   g. in the agreement sentence, how robust the constraint lead is ("NOT robust to ..." or
      "robust to ..."): under the 1.5x wider encompassing prior hedging and 'none of these' are
      within Monte Carlo error of each other, so whether the lead flips there is noise.

   Everything else (the hypotheses, the fit verdicts, the headline's words, the confidence level
   and its reasons, robust or not, the evidence variants' leaders, the prior-odds sentence) must
   read the same.
2. **Figures that must be equal**: the observation count and the latest observation's date; each
   hypothesis's prior probability; the rows of each evidence variant; the robustness header with
   its numbers (variant count, shifts, scales, evidence variants), apart from (d).
3. **Figures that carry the answer, within their Monte Carlo error.** The two runs are independent
   estimates, so a difference is judged against the standard error of a difference of two,
   se = sqrt(se_readme**2 + se_fresh**2), from the MCSEs each text prints: each hypothesis's
   posterior probability within ``MC_SES`` se + ``PROBABILITY_FLOOR`` (printing to 3 decimals); its
   log marginal likelihood within ``MC_SES`` se + ``LOG_ML_FLOOR``; the headline's Bayes factor (of
   the leader against the runner-up) within ``MC_SES`` se of its log, with se of each log BF from
   the two log-ML MCSEs, + ``LOG_BF_FLOOR`` (3 significant figures). The headline's leader, runner-up
   and likelihood word must be equal.

It prints what differs (README line, fresh line, and each figure outside its band) and exits 1;
0 when the block is current; 2 when `forecast update` itself failed.
"""

from __future__ import annotations

import difflib
import math
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
FORECAST = Path(sys.executable).with_name("forecast")
BEGIN, END = "<!-- BEGIN tour-output (tools/readme_tour.py) -->", "<!-- END tour-output -->"

MC_SES = 4.0  # a figure may differ by this many standard errors of the difference of two runs
PROBABILITY_FLOOR = 0.002  # printed to 3 decimals in both texts
LOG_ML_FLOOR = 0.01  # printed to 2 decimals
LOG_BF_FLOOR = 0.02  # the Bayes factor is printed to 3 significant figures
LOO_CLEAR = 2.0  # the PSIS-LOO note's threshold on |Δelpd| / SE (forecast.workflows.update.loo_note)
LOO_CLEAR_BAND = 0.4  # exception (e): both texts' largest printed ratio within this of LOO_CLEAR

NUM = r"-?\d+(?:\.\d+)?(?:e[+-]?\d+)?"
PLACEHOLDER_VARIANTS = "<variants where the leader changes>"
PLACEHOLDER_VARIANT = "<variant>"
PLACEHOLDER_CLEAR = "<clearly or not clearly>"


def run(*args: str, runs: Path) -> str:
    cmd = [str(FORECAST), *args, "--runs-dir", str(runs), "-q"]
    return subprocess.run(cmd, cwd=REPO, check=True, capture_output=True, text=True).stdout


def update_output(*, warm: bool) -> str:
    """What `forecast update` prints on the default study (default seed), in a scratch runs directory.

    ``warm``: run it once first so that the compile cache is warm and the second run's numbers are
    the ones the same seed gives from then on.
    """
    with tempfile.TemporaryDirectory() as tmp:
        runs = Path(tmp) / "runs"
        if warm:
            run("update", "--json", runs=runs)
        return run("update", runs=runs)


def tour_block(output: str) -> str:
    """The README block for an update's output: as a shell session, without the local run path."""
    table = re.sub(r"Run written to .*", "Run written to reports/runs/turkey_nato/<UTC time>", output).rstrip()
    return "```\n$ forecast update\n" + table + "\n```"


def readme_block(text: str) -> str:
    """The block between the tour markers of a README's text."""
    start, stop = text.index(BEGIN), text.index(END)
    return text[start + len(BEGIN) : stop].strip("\n")


def with_block(text: str, block: str) -> str:
    """A README's text with ``block`` between the tour markers."""
    start, stop = text.index(BEGIN), text.index(END)
    return text[: start + len(BEGIN)] + "\n" + block + "\n" + text[stop:]


# --- Reading a tour block --------------------------------------------------------------------------

STUDY_LINE = re.compile(r"^Study '(?P<study>.+)': (?P<n>\d+) observations, latest (?P<latest>\S+)$")
SUPPORT_ROW = re.compile(
    rf"^(?P<label>.+?) +(?P<prior>{NUM}) +(?P<ml>{NUM}|nan|-?inf) ± (?P<ml_se>\S+) +(?P<p>{NUM}|nan) ± (?P<p_se>\S+)"
    rf" +(?P<elpd>{NUM}|nan|-?inf) ± (?P<elpd_se>\S+) +(?P<diff>{NUM}|nan|-?inf) ± (?P<diff_se>\S+) "
)
HEADLINE_FAVOURS = re.compile(
    r"the evidence (?:favours|leans towards|strongly favours|does not favour) '(?P<leader>.+?)' "
    rf"\((?P<p>{NUM}), (?P<word>[^;]+); Bayes factor (?P<bf>{NUM}) against '(?P<second>.+?)', "
)
HEADLINE_PRIOR_ONLY = re.compile(
    rf"'(?P<leader>.+?)' is the most probable hypothesis \((?P<p>{NUM}), (?P<word>[^)]+)\) on its prior "
    rf"probability alone: the evidence favours '(?P<second>.+?)' over it \(Bayes factor (?P<bf_inverse>{NUM}), "
)
VARIANT_ROW = re.compile(rf"^(?P<name>.+?) +(?P<rows>\d+) +(?:{NUM} +)+\S")


@dataclass
class Hypothesis:
    prior: float
    log_ml: float
    log_ml_se: float
    p: float
    p_se: float
    elpd_diff: float
    elpd_diff_se: float


@dataclass
class Tour:
    """The figures of a tour block that the check compares (None: not found in the block)."""

    n_observations: int | None = None
    latest: str | None = None
    hypotheses: dict[str, Hypothesis] = field(default_factory=dict)
    leader: str | None = None
    runner_up: str | None = None
    word: str | None = None
    bayes_factor: float | None = None
    evidence_rows: dict[str, int] = field(default_factory=dict)
    robustness_header: str | None = None

    def log_bf_se(self) -> float:
        """The MCSE of the headline's log Bayes factor, from the two log-ML MCSEs in the table."""
        a, b = self.hypotheses.get(self.leader or ""), self.hypotheses.get(self.runner_up or "")
        return math.hypot(a.log_ml_se, b.log_ml_se) if a and b else math.inf

    def loo_ratio(self) -> float:
        """The largest |Δelpd| / SE the support table prints (what the PSIS-LOO note's wording turns on)."""
        ratios = [
            abs(h.elpd_diff) / h.elpd_diff_se if h.elpd_diff_se > 0 else math.inf
            for h in self.hypotheses.values()
            if h.elpd_diff != 0 or h.elpd_diff_se != 0  # the best-predicting hypothesis itself
        ]
        return max(ratios, default=math.nan)


def _float(s: str) -> float:
    try:
        return float(s)
    except ValueError:
        return math.nan


def parse(block: str) -> Tour:
    """The figures of a tour block (what `forecast update` prints, see forecast/reports/text/update.py)."""
    tour = Tour()
    section = None
    for line in block.splitlines():
        if m := STUDY_LINE.match(line):
            tour.n_observations, tour.latest = int(m["n"]), m["latest"]
        elif line.startswith("hypothesis ") and "prior P" in line:
            section = "support"
        elif line.startswith("evidence counted "):
            section = "evidence"
        elif line.startswith("Robustness over "):
            tour.robustness_header = strip_refits(line)
            section = None
        elif not line.strip():
            section = None
        elif section == "support" and (m := SUPPORT_ROW.match(line)):
            tour.hypotheses[m["label"].strip()] = Hypothesis(
                *(_float(m[k]) for k in ("prior", "ml", "ml_se", "p", "p_se", "diff", "diff_se"))
            )
        elif section == "evidence" and (m := VARIANT_ROW.match(line)):
            tour.evidence_rows[m["name"].strip()] = int(m["rows"])
        if m := HEADLINE_FAVOURS.search(line):
            tour.leader, tour.runner_up, tour.word = m["leader"], m["second"], m["word"]
            tour.bayes_factor = _float(m["bf"])
        elif m := HEADLINE_PRIOR_ONLY.search(line):
            tour.leader, tour.runner_up, tour.word = m["leader"], m["second"], m["word"]
            tour.bayes_factor = 1.0 / _float(m["bf_inverse"])
    return tour


# --- The text with its numbers masked ------------------------------------------------------------

FLIP_LIST = re.compile(r"^(?P<head>'.+' loses the lead in \d+ of \d+ variants): .*$")
HEADLINE_FLIP = re.compile(
    rf"Not robust: (?P<who>'.+?' leads \({NUM}\) when) .+?"
    r"(?:; the leader changes in \d+ of \d+ variants of the priors(?: and the evidence counted)?)?\.(?= Confidence:)"
)
ROBUSTNESS_ROW = re.compile(rf"^(?P<label>.+?) +(?P<base>{NUM}) +(?P<lo>{NUM}) +\S+ +(?P<hi>{NUM}) +\S+$")
REFITS = re.compile(r"; \d+ refitted where reweighting was unreliable")
CONSTRAINT_SCALED_FLAG = re.compile(
    r"^(?P<row>\s+x[\d.]+: .*; largest change [\d.]+%)(?: \((?:refitted: Pareto k [\d.]+|Pareto k [\d.]+: [^)]*)\))?$"
)
AGREEMENT_ROBUST = re.compile(r"(?P<head>the constraint hypotheses favour '[^']*' \([\d.]+; )[^)]*\)")
PLACEHOLDER_METHOD = "<reweighted or refitted>"
PLACEHOLDER_ROBUST = "<robust or not>"
LOO_CLEARNESS = re.compile(r"predicts best, (?:clearly|not clearly \(differences within two standard errors\)) better")


def strip_refits(line: str) -> str:
    """Exception (d): the robustness header without its count of refitted variants."""
    return REFITS.sub("", line)


def normalised(block: str, *, loo_exempt: bool = False) -> list[str]:
    """The block's lines with the noise-dependent parts (a)-(g) replaced by placeholders."""
    lines, section = [], None
    for line in block.splitlines():
        line = line.rstrip()
        if line.startswith("Robustness over "):
            line, section = strip_refits(line), "robustness"
        elif not line:
            section = None
        elif section == "robustness" and (m := ROBUSTNESS_ROW.match(line)):
            line = f"{m['label']} {m['base']} {m['lo']} {PLACEHOLDER_VARIANT} {m['hi']} {PLACEHOLDER_VARIANT}"
        line = FLIP_LIST.sub(rf"\g<head>: {PLACEHOLDER_VARIANTS}", line)
        line = HEADLINE_FLIP.sub(rf"Not robust: \g<who> {PLACEHOLDER_VARIANT}.", line)
        line = CONSTRAINT_SCALED_FLAG.sub(rf"\g<row> {PLACEHOLDER_METHOD}", line)
        line = AGREEMENT_ROBUST.sub(rf"\g<head>{PLACEHOLDER_ROBUST})", line)
        if loo_exempt:
            line = LOO_CLEARNESS.sub(f"predicts best, {PLACEHOLDER_CLEAR} better", line)
        lines.append(line)
    return lines


def masked(line: str) -> str:
    """A line with every number (and its sign) as ``#``, runs of spaces and of rule dashes collapsed."""
    line = re.sub(NUM, "#", line)
    line = re.sub(r"-{3,}", "---", line)
    return re.sub(r" {2,}", " ", line).strip()


# --- The comparison ------------------------------------------------------------------------------


def _lines(i: int, j: int) -> str:
    """Lines i+1 to j (1-based) in words; an empty range is a place: after line i."""
    return f"line {j}" if j == i + 1 else f"lines {i + 1}-{j}" if j > i else f"after line {i}"


def text_differences(readme: str, fresh: str, *, loo_exempt: bool) -> list[str]:
    """The lines that differ once numbers are masked, README's against the fresh run's."""
    a = [masked(x) for x in normalised(readme, loo_exempt=loo_exempt)]
    b = [masked(x) for x in normalised(fresh, loo_exempt=loo_exempt)]
    old, new = readme.splitlines(), fresh.splitlines()  # line for line with a and b
    problems = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if tag == "equal":
            continue
        text = [f"text differs (README {_lines(i1, i2)}, fresh {_lines(j1, j2)} of the block):"]
        text += [f"  README: {x}" for x in old[i1:i2]] + [f"  fresh:  {x}" for x in new[j1:j2]]
        problems.append("\n".join(text))
    return problems


def _band(what: str, old: float, old_se: float, new: float, new_se: float, floor: float) -> str | None:
    """None when ``new`` is within MC_SES standard errors of a difference (+ floor) of ``old``."""
    tolerance = MC_SES * math.hypot(old_se, new_se) + floor
    gap = abs(new - old)
    if gap <= tolerance:  # False for nan: a figure that is not a number differs
        return None
    return (
        f"{what}: README {old:g} ± {old_se:g}, fresh {new:g} ± {new_se:g}: they differ by {gap:.3g}, "
        f"more than {MC_SES:g} Monte Carlo SEs of the difference (+ {floor:g}) = {tolerance:.3g}"
    )


def figure_differences(old: Tour, new: Tour) -> list[str]:
    """The figures that must be equal and those that must agree within Monte Carlo error."""
    problems = []

    def exact(what: str, a, b) -> None:
        if a != b:
            problems.append(f"{what}: README {a!r}, fresh {b!r}")

    if old.n_observations is None or old.leader is None or not old.hypotheses:
        problems.append("the README's tour block has no study line, support table or headline to compare")
    exact("observation count", old.n_observations, new.n_observations)
    exact("latest observation", old.latest, new.latest)
    exact("hypotheses", list(old.hypotheses), list(new.hypotheses))
    exact("leader", old.leader, new.leader)
    exact("runner-up", old.runner_up, new.runner_up)
    exact("likelihood word", old.word, new.word)
    exact("evidence variants' rows", old.evidence_rows, new.evidence_rows)
    exact("robustness class", old.robustness_header, new.robustness_header)
    for label, a in old.hypotheses.items():
        b = new.hypotheses.get(label)
        if b is None:
            continue
        exact(f"prior probability of '{label}'", a.prior, b.prior)
        problems.append(_band(f"posterior probability of '{label}'", a.p, a.p_se, b.p, b.p_se, PROBABILITY_FLOOR))
        problems.append(
            _band(f"log marginal likelihood of '{label}'", a.log_ml, a.log_ml_se, b.log_ml, b.log_ml_se, LOG_ML_FLOOR)
        )
    if old.bayes_factor and new.bayes_factor and (old.leader, old.runner_up) == (new.leader, new.runner_up):
        problems.append(
            _band(
                "log Bayes factor in the headline",
                math.log(old.bayes_factor),
                old.log_bf_se(),
                math.log(new.bayes_factor),
                new.log_bf_se(),
                LOG_BF_FLOOR,
            )
        )
    return [p for p in problems if p]


def compare(readme: str, fresh: str) -> list[str]:
    """Everything in which the README's tour block and a fresh one differ beyond Monte Carlo noise."""
    old, new = parse(readme), parse(fresh)
    loo_exempt = all(abs(t.loo_ratio() - LOO_CLEAR) <= LOO_CLEAR_BAND for t in (old, new))
    return text_differences(readme, fresh, loo_exempt=loo_exempt) + figure_differences(old, new)


def check() -> int:
    """Compare the README's block with one fresh seeded run; print what differs."""
    try:
        readme = readme_block(README.read_text(encoding="utf-8"))
    except ValueError:
        print(f"README.md has no tour block: the markers {BEGIN} and {END} are missing.")
        return 1
    try:
        fresh = tour_block(update_output(warm=False))
    except subprocess.CalledProcessError as e:
        print(f"`forecast update` failed (exit {e.returncode}):\n{e.stderr}", file=sys.stderr)
        return 2
    problems = compare(readme, fresh)
    if problems:
        print("README's tour output is stale: run `python tools/readme_tour.py` (about a minute).\n")
        print("\n\n".join(problems))
        return 1
    print("README's tour output is current (numbers within their Monte Carlo error).")
    return 0


def main(argv: list[str]) -> int:
    if "--check" in argv:
        return check()
    block = tour_block(update_output(warm=True))
    README.write_text(with_block(README.read_text(encoding="utf-8"), block), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
