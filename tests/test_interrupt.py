"""Ctrl-C at any moment ends the command with exit 130, writes nothing and moves no pointer;
a fit that returns fewer draws than asked is never a result."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import click
import numpy as np
import pytest
import xarray as xr
from click.testing import CliRunner

import forecast.runs.store as store
from forecast.cli.app import ForecastGroup, guard
from forecast.errors import SamplingError
from forecast.fit import sampler
from forecast.runs.layout import LATEST, SUMMARY
from forecast.runs.store import RunWriter
from forecast.settings import SamplerSettings

REPO = Path(__file__).resolve().parents[1]
GOLDEN_INPUTS = REPO / "tests" / "golden" / "inputs"
FORECAST = Path(sys.executable).with_name("forecast")
NOW = dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=dt.UTC)

# The interrupted update: so many draws that sampling is still going when Ctrl-C comes
# (the model compiled, from the on-disk cache the first update filled, well before then).
MANY_DRAWS = 1_000_000
SECONDS_INTO_SAMPLING = 10
PROMPTLY = 30  # seconds from Ctrl-C to exit, on a loaded two-core machine


# --- the sampler ------------------------------------------------------------------------------


class FakeSampler:
    """A nutpie background sampler whose wait is interrupted (or returns ``trace``)."""

    def __init__(self, trace=None):
        self.trace, self.cancelled = trace, False

    def wait(self):
        if self.trace is None:
            raise KeyboardInterrupt
        return self.trace

    def cancel(self):
        self.cancelled = True


def trace(chains: int, draws: int) -> xr.DataTree:
    return xr.DataTree.from_dict({"posterior": xr.Dataset({"x": (("chain", "draw"), np.zeros((chains, draws)))})})


def test_ctrl_c_while_waiting_for_the_sampler_cancels_it_and_propagates():
    fake = FakeSampler()
    with pytest.raises(KeyboardInterrupt):
        sampler._wait(fake)
    assert fake.cancelled


def test_a_trace_with_fewer_draws_or_chains_than_asked_is_never_a_result():
    settings = SamplerSettings(draws=200, chains=4)
    sampler._check_complete(trace(4, 200), settings, "steady")
    for short in (trace(4, 57), trace(3, 200), trace(4, 0)):
        with pytest.raises(SamplingError, match="the sampler stopped early for hypothesis 'steady'"):
            sampler._check_complete(short, settings, "steady")


@pytest.mark.parametrize("failure", [KeyboardInterrupt, SamplingError])
def test_an_interrupted_or_short_fit_is_not_retried(monkeypatch, failure):
    calls = []

    def sample(self, hypothesis, settings, cells=None):
        calls.append(settings)
        raise failure("stopped early")

    monkeypatch.setattr(sampler.StudyModel, "_sample", sample)
    model = object.__new__(sampler.StudyModel)  # nothing but fit() is used
    with pytest.raises(failure):
        model.fit(type("H", (), {"id": "steady"})(), SamplerSettings(), progress=print)
    assert len(calls) == 1


# --- the run store: Ctrl-C while a run is published --------------------------------------------


def entries(directory: Path) -> set[str]:
    return {p.name for p in directory.iterdir()}


def write_run(root: Path, now: dt.datetime = NOW) -> Path:
    with RunWriter(root, "mini", now=now) as w:
        w.write_json(SUMMARY, {"schema_version": 1})
        return w.commit()


def test_ctrl_c_while_the_run_is_renamed_into_place_publishes_nothing(tmp_path, monkeypatch):
    """A real SIGINT, delivered between the rename and the move of LATEST: held, then raised
    before LATEST moves, and the renamed run is taken back out."""
    root = tmp_path / "runs"
    first = write_run(root)
    pointer = (root / "mini" / LATEST).read_bytes()
    rename = os.rename

    def rename_then_ctrl_c(src, dst):
        rename(src, dst)
        os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(store.os, "rename", rename_then_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        write_run(root, NOW + dt.timedelta(hours=1))
    monkeypatch.undo()
    assert entries(root / "mini") == {first.name, LATEST}
    assert (root / "mini" / LATEST).read_bytes() == pointer
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_ctrl_c_while_latest_is_written_takes_the_new_run_back_out(tmp_path, monkeypatch):
    root = tmp_path / "runs"
    first = write_run(root)
    pointer = (root / "mini" / LATEST).read_bytes()

    def interrupted(*_args):
        raise KeyboardInterrupt

    monkeypatch.setattr(store, "_atomic_write_with", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_run(root, NOW + dt.timedelta(hours=1))
    monkeypatch.undo()
    assert entries(root / "mini") == {first.name, LATEST}
    assert (root / "mini" / LATEST).read_bytes() == pointer


# --- the command line ---------------------------------------------------------------------------


def test_ctrl_c_anywhere_in_a_command_exits_130():
    @click.group(cls=ForecastGroup)
    def cli():
        pass

    @cli.command()
    def inside():
        guard(lambda: (_ for _ in ()).throw(KeyboardInterrupt))

    @cli.command()
    def outside():
        raise KeyboardInterrupt  # e.g. while printing the result, after guard

    for name in ("inside", "outside"):
        result = CliRunner().invoke(cli, [name], catch_exceptions=False)
        assert result.exit_code == 130, result.output
        assert result.stderr == "forecast: interrupted; nothing was written and earlier results are untouched\n"


def tree(root: Path) -> dict[str, bytes | None]:
    """Every path under ``root`` (hidden ones too) with the content of each file."""
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None) for p in sorted(root.rglob("*"))}


@pytest.mark.slow
def test_ctrl_c_during_sampling_exits_130_writes_nothing_and_leaves_latest(tmp_path):
    """A real `forecast update` of a tiny study, SIGINT sent while it samples."""
    for f in GOLDEN_INPUTS.iterdir():
        shutil.copy(f, tmp_path / f.name)
    runs = tmp_path / "runs"
    base = [str(FORECAST), "update", "golden.toml", "--runs-dir", str(runs)]
    first = subprocess.run(
        [*base, "--draws", "100", "--tune", "100", "--allow-unconverged", "-q"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert first.returncode == 0, first.stderr
    before = tree(runs)
    assert (runs / "golden" / LATEST).is_file()

    proc = subprocess.Popen(
        [*base, "--draws", str(MANY_DRAWS), "--tune", "100"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        seen = []
        for line in proc.stderr:
            seen.append(line)
            if "fitting" in line:
                break
        assert any("fitting" in line for line in seen), "".join(seen)
        time.sleep(SECONDS_INTO_SAMPLING)
        assert proc.poll() is None, "the update ended before it was interrupted"
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=300)
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    err = "".join(seen) + err
    assert proc.returncode == 130, err
    assert took < PROMPTLY, f"{took:.1f} s from Ctrl-C to exit"
    assert "forecast: interrupted; nothing was written" in err
    assert "sampled in" not in err and "retrying" not in err, err  # the partial fit was not used
    assert out == ""
    assert tree(runs) == before  # no new run, no leftovers, LATEST unchanged
