"""The README's tour output is checked against a fresh seeded run, up to Monte Carlo noise.

tools/readme_tour.py --check masks the numbers of the text and compares the figures that carry the
answer within their Monte Carlo error; the fast tests give it a synthetic README block and a
synthetic fresh output (the runner monkeypatched), the slow one runs it on the real README.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TOOL = REPO / "tools" / "readme_tour.py"


def _load_tool():
    spec = importlib.util.spec_from_file_location("readme_tour", TOOL)
    module = importlib.util.module_from_spec(spec)
    sys.modules["readme_tour"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


tour = _load_tool()

# What `forecast update` prints, in the shape of the default study's output (numbers made up).
OUTPUT = """\
Study 'turkey_nato': 335 observations, latest 2026-02-06

Support (Bayes factors)                     |  Predictive accuracy (PSIS-LOO)
hypothesis                 prior P     log ML ± MCSE  posterior P ± MCSE    elpd_loo ± SE     Δelpd ± SE  LOO wt  fit
---------------------------------------------------------------------------------------------------------------------
Pragmatic hedging            0.334   -192.31 ± 0.15       0.828 ± 0.027    -179.8 ± 7.2     -1.8 ± 1.7      0.00  ok (R-hat 1.004, ESS 565, div 0)
Strategic realignment        0.333   -194.00 ± 0.14       0.153 ± 0.026    -177.9 ± 7.2      0.0 ± 0.0      1.00  ok (R-hat 1.006, ESS 576, div 0)
Firm NATO alignment          0.333   -196.05 ± 0.13       0.020 ± 0.004    -181.5 ± 7.0     -3.6 ± 1.8      0.00  ok (R-hat 1.004, ESS 847, div 0)

Through 2026-02-06, under the stated priors the evidence favours 'Pragmatic hedging' (0.83, very likely; Bayes factor 5.4 against 'Strategic realignment', moderate evidence). Not robust: 'Strategic realignment' leads (0.77) when its priors are 1.5x wider; the leader changes in 5 of 50 variants of the priors and the evidence counted. Confidence: low, because the evidence is moderate, not strong (Bayes factor 5.4, below 10); another hypothesis leads under some reasonable priors; and 'Strategic realignment' predicts left-out observations slightly better.

Predictive accuracy (PSIS-LOO) answers a different question: how well each fitted hypothesis predicts a left-out event. 'Strategic realignment' predicts best, not clearly (differences within two standard errors) better than the others. Stacking weights say how to combine the hypotheses' predictions; they are not probabilities that a hypothesis is true.

Evidence variants: the same hypotheses and priors, fitted on whose acts count
evidence counted                           rows   Pragmatic hedging  Strategic realignm  Firm NATO alignmen  leader
-------------------------------------------------------------------------------------------------------------------
all rows (as fitted)                        335               0.828               0.153               0.020  Pragmatic hedging
Turkey's own and joint acts                 248               0.954               0.003               0.043  Pragmatic hedging
Turkey's own acts only                       70               0.838               0.012               0.150  Pragmatic hedging
The same hypothesis leads whichever acts are counted.

Robustness over 50 variants of the default class: each hypothesis's priors shifted by ±0.5 prior SD and made 1.5x wider and narrower, one hyperparameter at a time and jointly; 2 evidence variant(s); 5 refitted where reweighting was unreliable
hypothesis                 stated  lowest  variant                      highest  variant
------------------------------------------------------------------------------------------------------------
Pragmatic hedging           0.828   0.215  hedging/all/narrower1.5        0.981  hedging/volatility/wider1.5
Strategic realignment       0.153   0.001  realignment/all/narrower1.5    0.766  realignment/all/wider1.5
Firm NATO alignment         0.020   0.000  alignment/all/narrower1.5      0.462  alignment/all/wider1.5
'Pragmatic hedging' loses the lead in 5 of 50 variants: hedging/volatility/narrower1.5 -> 'Strategic realignment', hedging/all/narrower1.5 -> 'Strategic realignment', realignment/all/wider1.5 -> 'Strategic realignment', alignment/all/wider1.5 -> 'Firm NATO alignment' (within Monte Carlo error).
'Pragmatic hedging' stays the most probable hypothesis as long as its prior probability is above 0.0847 (now 0.334, others keeping their relative odds); below that 'Strategic realignment' leads. It needs a prior of 0.0945 for even posterior odds.

Run written to /tmp/scratch/runs/turkey_nato/20261207T065234Z
"""

# Another Monte Carlo realisation of the same analysis (as another seed gives): every number moves
# within its error, and every noise-dependent part (a)-(e) of the tool's docstring changes.
NOISY = {
    "-192.31 ± 0.15       0.828 ± 0.027": "-192.05 ± 0.16       0.862 ± 0.022",
    "-194.00 ± 0.14       0.153 ± 0.026": "-194.03 ± 0.12       0.119 ± 0.020",
    "-196.05 ± 0.13       0.020 ± 0.004": "-195.85 ± 0.14       0.019 ± 0.004",
    "-3.6 ± 1.8": "-3.7 ± 1.8",  # |Δelpd| / SE crosses 2: "clearly" (e)
    "not clearly (differences within two standard errors) better": "clearly better",
    "ESS 565": "ESS 1376",
    "(0.83, very likely; Bayes factor 5.4": "(0.86, very likely; Bayes factor 7.23",
    "(Bayes factor 5.4, below 10)": "(Bayes factor 7.23, below 10)",
    # (b): another variant named, and only one flip (no count clause)
    "leads (0.77) when its priors are 1.5x wider; the leader changes in 5 of 50 variants of the priors and "
    "the evidence counted.": "leads (0.72) when the priors of 'Pragmatic hedging' are 1.5x narrower.",
    "; 5 refitted where reweighting was unreliable": "",  # (d)
    "0.981  hedging/volatility/wider1.5": "0.978  realignment/all/narrower1.5",  # (c)
    # (a)
    "5 of 50 variants: hedging/volatility/narrower1.5 -> 'Strategic realignment', hedging/all/narrower1.5 -> "
    "'Strategic realignment', ": "3 of 50 variants: hedging/all/narrower1.5 -> 'Strategic realignment' "
    "(within Monte Carlo error), ",
    "0.954               0.003               0.043": "0.937               0.003               0.060",
    "above 0.0847": "above 0.0647",
    "20261207T065234Z": "20261207T070000Z",
}


def edited(text: str, changes: dict[str, str]) -> str:
    for old, new in changes.items():
        assert old in text, old
        text = text.replace(old, new)
    return text


README_BLOCK = tour.tour_block(OUTPUT)


def problems_with(changes: dict[str, str], *, base: dict[str, str] | None = None) -> list[str]:
    """What the check reports for a fresh output with ``changes`` (over ``base``) against README_BLOCK."""
    fresh = edited(edited(OUTPUT, base or {}), changes)
    return tour.compare(README_BLOCK, tour.tour_block(fresh))


def test_the_same_output_passes():
    assert tour.compare(README_BLOCK, tour.tour_block(OUTPUT)) == []


def test_monte_carlo_sized_noise_passes():
    assert problems_with(NOISY) == []


def test_a_changed_observation_count_fails():
    problems = problems_with({"335 observations": "336 observations"}, base=NOISY)
    assert any(p.startswith("observation count: README 335, fresh 336") for p in problems)


def test_a_changed_latest_observation_fails():
    problems = problems_with({"latest 2026-02-06": "latest 2026-03-01"})
    assert any(p.startswith("latest observation:") for p in problems)


def test_a_changed_leader_fails():
    problems = problems_with({"favours 'Pragmatic hedging' (0.83": "favours 'Strategic realignment' (0.83"})
    assert any(p.startswith("leader: README 'Pragmatic hedging', fresh 'Strategic realignment'") for p in problems)
    assert any(p.startswith("text differs") for p in problems)


def test_a_changed_likelihood_word_fails():
    problems = problems_with({"(0.83, very likely;": "(0.83, likely;"})
    assert any(p.startswith("likelihood word: README 'very likely', fresh 'likely'") for p in problems)


def test_changed_wording_fails_even_with_the_same_numbers():
    problems = problems_with({"The same hypothesis leads whichever": "One hypothesis leads whichever"}, base=NOISY)
    assert len(problems) == 1 and "text differs" in problems[0]
    assert "fresh:  One hypothesis leads whichever acts are counted." in problems[0]


def test_a_probability_outside_its_monte_carlo_band_fails():
    # The band is 4 * hypot(0.027, 0.027) + 0.002 = 0.155: 0.700 is inside it, 0.660 outside.
    assert problems_with({"0.828 ± 0.027": "0.700 ± 0.027"}) == []
    problems = problems_with({"0.828 ± 0.027": "0.660 ± 0.027"})
    assert [p.split(":")[0] for p in problems] == ["posterior probability of 'Pragmatic hedging'"]


def test_a_log_marginal_likelihood_outside_its_band_fails():
    problems = problems_with({"-196.05 ± 0.13": "-197.05 ± 0.13"})  # 1.0 > 4 * hypot(0.13, 0.13) + 0.01
    assert [p.split(":")[0] for p in problems] == ["log marginal likelihood of 'Firm NATO alignment'"]


def test_a_bayes_factor_outside_the_error_of_its_log_fails():
    # The band on log BF is 4 * hypot(hypot(0.15, 0.14), hypot(0.15, 0.14)) + 0.02 = 1.18: log(20 / 5.4)
    # = 1.31 is outside it, log(11 / 5.4) = 0.71 inside.
    problems = problems_with({"Bayes factor 5.4 against": "Bayes factor 20 against"})
    assert [p.split(":")[0] for p in problems] == ["log Bayes factor in the headline"]
    assert problems_with({"Bayes factor 5.4 against": "Bayes factor 11 against"}) == []


def test_a_changed_prior_probability_or_evidence_rows_fails():
    problems = problems_with({"Firm NATO alignment          0.333": "Firm NATO alignment          0.300"})
    assert any(p.startswith("prior probability of 'Firm NATO alignment'") for p in problems)
    problems = problems_with({"acts only                       70": "acts only                       71"})
    assert any(p.startswith("evidence variants' rows") for p in problems)


def test_a_changed_robustness_class_fails():
    problems = problems_with({"made 1.5x wider": "made 2x wider"})
    assert any(p.startswith("robustness class") for p in problems)


def test_the_loo_wording_may_differ_only_near_its_threshold():
    # Far from |Δelpd| / SE = 2 (here 3.6 / 0.9 = 4 in the fresh run) the wording must agree.
    far = {"-3.6 ± 1.8": "-3.6 ± 0.9", **{k: v for k, v in NOISY.items() if "clearly" in k}}
    assert any("text differs" in p for p in problems_with(far))


def test_a_robust_verdict_in_place_of_a_flip_fails():
    problems = problems_with(
        {
            "Not robust: 'Strategic realignment' leads (0.77) when its priors are 1.5x wider; the leader changes "
            "in 5 of 50 variants of the priors and the evidence counted.": "Robust: 'Pragmatic hedging' leads in "
            "all 50 variants of the priors and the evidence counted (0.60 to 0.98)."
        }
    )
    assert any("text differs" in p for p in problems)


def write_readme(path: Path, block: str) -> None:
    path.write_text(f"# forecast\n\nThe tour:\n\n{tour.BEGIN}\n{block}\n{tour.END}\n\nMore.\n", encoding="utf-8")


def test_check_exits_0_when_current_and_1_with_what_differs_when_stale(tmp_path, monkeypatch, capsys):
    readme = tmp_path / "README.md"
    write_readme(readme, README_BLOCK)
    monkeypatch.setattr(tour, "README", readme)
    monkeypatch.setattr(tour, "update_output", lambda *, warm: edited(OUTPUT, NOISY))
    assert tour.main(["--check"]) == 0
    assert "current" in capsys.readouterr().out

    monkeypatch.setattr(tour, "update_output", lambda *, warm: edited(OUTPUT, {"335 obs": "340 obs"}))
    assert tour.main(["--check"]) == 1
    out = capsys.readouterr().out
    assert "stale" in out and "observation count: README 335, fresh 340" in out
    assert readme.read_text(encoding="utf-8").count(README_BLOCK) == 1  # the check never writes


def test_writing_replaces_only_the_block(tmp_path, monkeypatch):
    readme = tmp_path / "README.md"
    write_readme(readme, "```\nold\n```")
    monkeypatch.setattr(tour, "README", readme)
    monkeypatch.setattr(tour, "update_output", lambda *, warm: OUTPUT)
    assert tour.main([]) == 0
    text = readme.read_text(encoding="utf-8")
    assert tour.readme_block(text) == README_BLOCK
    assert "Run written to reports/runs/turkey_nato/<UTC time>" in text and "/tmp/scratch" not in text
    assert text.startswith("# forecast\n\nThe tour:\n\n") and text.endswith(f"{tour.END}\n\nMore.\n")


@pytest.mark.slow
def test_the_readme_tour_output_is_current():
    result = subprocess.run([sys.executable, str(TOOL), "--check"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, f"README's tour output is stale: run `python tools/readme_tour.py`\n{result.stdout}"


def test_a_constraint_scaling_refitted_or_reweighted_is_noise():
    # (f): whether the 1.5x scaling's Pareto k crossed 0.7 (refit) follows the draws.
    block = "\n".join(
        [
            "Encompassing prior scaled (every prior; posterior reweighted, refitted where Pareto k > 0.7):",
            "  x1.5: hedging 46.2%, none_of_these 44.5%; largest change 5.0% (refitted: Pareto k 0.72)",
        ]
    )
    fresh = block.replace(" (refitted: Pareto k 0.72)", "")
    assert tour.normalised(block) == tour.normalised(fresh)
    assert tour.normalised(block) != tour.normalised(block.replace("hedging 46.2%", "realignment 46.2%"))


def test_how_robust_the_constraint_lead_is_is_noise_but_its_leader_is_not():
    # (g): the agreement sentence's constraint robustness follows the draws; the leaders do not.
    line = (
        "The comparisons disagree: the prior-specified hypotheses favour 'Pragmatic hedging' (0.84; NOT robust to "
        "the declared class of reasonable priors) while the constraint hypotheses favour 'None of these' (0.46; "
        "NOT robust to a 1.5x wider or narrower encompassing prior); neither conclusion should be reported alone."
    )
    robust = line.replace("(0.46; NOT robust to", "(0.47; robust to")
    assert [tour.masked(x) for x in tour.normalised(line)] == [tour.masked(x) for x in tour.normalised(robust)]
    other = line.replace("favour 'None of these'", "favour 'Pragmatic hedging'")
    assert tour.normalised(line) != tour.normalised(other)
