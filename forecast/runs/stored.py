"""Reading a run directory: one reader, one rule for "this run still matches its inputs".

The rule (README, "Run directory"): a run matches the current inputs when the parts of the study
that the model and the analyses use are the same (the time grid, groups and their counterparts,
domains, reliability weights, which initiators count as evidence, each hypothesis's id, prior
probability and priors, and the constraint hypotheses' encompassing priors, named periods,
prior draws and each one's id, prior probability, constraints and complement flag) AND the
observation file has the same content (SHA-256 of its bytes). Labels, descriptions, claims,
questions and comments may change without invalidating a run; any change to the evidence does.
Every command that analyses a run applies this rule through ``StoredRun.check_inputs`` and says
the same thing when it fails.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from forecast.errors import InputError, RunStoreError
from forecast.runs.layout import (
    LATEST,
    MANIFEST,
    OBSERVATIONS_COPY,
    POSTERIOR_DIR,
    SCHEMA_VERSION,
    STUDY_COPY,
    SUMMARY,
)
from forecast.runs.store import (
    atomic_write_text,
    atomic_write_with,
    default_root,
    dumps,
    pointed_run,
    study_folder,
    sweep_leftovers,
    sweep_temporaries,
)
from forecast.spec.study import Study, load_study

REFIT = "run `forecast update` to fit the current inputs first"


def fitting_content(study: Study) -> tuple:
    """What a run's numbers depend on in a study (the one staleness rule, study half)."""
    return (
        study.time,
        tuple((g.id, g.counterparts) for g in study.groups),
        tuple(d.id for d in study.domains),
        sorted(study.reliability_source.items()),
        sorted(study.reliability_credibility.items()),
        tuple((h.id, round(h.prior_probability, 12), sorted(h.priors.items())) for h in study.hypotheses),
        study.evidence_initiators,  # whose acts count as evidence ([evidence] initiators)
        study.model_key,  # the likelihood: [model] overdispersion and the concentration's prior
        _constraint_content(study),
    )


def _constraint_content(study: Study) -> tuple | None:
    """What constraints.json depends on: [encompassing] and [[constraint_hypotheses]], less their words."""
    spec = study.constraints
    if spec is None:
        return None
    return (
        sorted(spec.priors.items()),
        sorted((name, p.start, p.end) for name, p in spec.periods.items()),
        spec.prior_draws,
        tuple(
            (h.id, round(h.prior_probability, 12), tuple(c.text for c in h.constraints), h.complement)
            for h in spec.hypotheses
        ),
    )


def _read_json(path: Path, what: str) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunStoreError(f"{path}: missing ({what})") from None
    except IsADirectoryError:
        raise RunStoreError(f"{path}: is a directory, not a file ({what})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RunStoreError(f"{path}: unreadable {what} ({e}); the file is damaged or truncated") from None
    except OSError as e:
        raise RunStoreError(f"{path}: cannot be read ({e.strerror or e})") from None
    if not isinstance(data, dict):
        raise RunStoreError(f"{path}: unreadable {what} (a JSON object was expected)")
    return data


@dataclass(frozen=True)
class StoredRun:
    """A committed run directory: its summary and manifest, and access to everything else in it."""

    path: Path
    summary: dict
    manifest: dict

    # --- finding and opening ------------------------------------------------------------------

    @classmethod
    def open(cls, path: Path) -> StoredRun:
        """The run in directory ``path`` (resolved); its own temporary files of dead processes are swept."""
        path = Path(path).resolve()
        if path.exists() and not path.is_dir():
            raise RunStoreError(f"{path}: is a file, not a run directory")
        if (path / SUMMARY).is_dir():
            raise RunStoreError(f"{path / SUMMARY}: is a directory, not a file (run summary)")
        if not (path / SUMMARY).is_file():
            raise RunStoreError(f"{path}: not a run directory (no {SUMMARY})")
        sweep_temporaries(path)
        summary = _read_json(path / SUMMARY, "run summary")
        version = summary.get("schema_version")
        if version != SCHEMA_VERSION:
            raise RunStoreError(
                f"{path / SUMMARY}: written with results schema {version!r}; this forecast reads schema "
                f"{SCHEMA_VERSION}. Re-run `forecast update` to refresh it."
            )
        manifest = _read_json(path / MANIFEST, "run manifest") if (path / MANIFEST).exists() else {}
        return cls(path=path, summary=summary, manifest=manifest)

    @classmethod
    def latest(cls, root: Path, study_name: str) -> StoredRun:
        """The run a study's LATEST names (never outside the study's run folder); sweeps that
        folder of what killed runs left (``runs.store.sweep_leftovers``)."""
        folder = study_folder(root, study_name)
        sweep_leftovers(folder)
        pointer = folder / LATEST
        if not pointer.is_file():
            raise RunStoreError(f"no runs of study '{study_name}' under {root}; run `forecast update` first")
        return cls.open(pointed_run(pointer))

    @classmethod
    def find(cls, run: Path | None = None, *, study: Study | None = None, runs_root: Path | None = None) -> StoredRun:
        """RUN (a run directory, a study's run folder, or None) or the latest run of ``study``."""
        if run is not None:
            run = Path(run)
            if run.is_dir():
                if (run / SUMMARY).exists():
                    return cls.open(run)
                if (run / LATEST).is_file():
                    return cls.latest(run.parent, run.name)
                raise RunStoreError(f"{run}: not a run directory (no {SUMMARY}) nor a study's run folder (no {LATEST})")
            if run.exists():
                raise RunStoreError(f"{run}: is a file, not a run directory")
            raise RunStoreError(f"{run}: no such run directory")
        if study is None:
            raise InputError("name a run directory or a study file")
        return cls.latest(runs_root or study.runs_path or default_root(), study.name)

    # --- what it holds ---------------------------------------------------------------------------

    @property
    def id(self) -> str:
        return self.path.name

    @property
    def created(self) -> str:
        return str(self.manifest.get("created", ""))

    @property
    def converged(self) -> bool:
        return bool(self.summary.get("converged"))

    @property
    def hypothesis_ids(self) -> list[str]:
        return [h["id"] for h in self.summary.get("hypotheses", [])]

    @property
    def gate(self) -> dict[str, Any]:
        """The gate thresholds this run was judged by (recorded in the manifest since the redesign)."""
        return dict(self.manifest.get("gate", {}))

    def stored_study(self) -> Study:
        """The run's own copy of the study file."""
        path = self.path / STUDY_COPY
        if not path.is_file():
            raise RunStoreError(f"{self.path}: the run has no copy of its study ({STUDY_COPY}); {REFIT}")
        try:
            return load_study(path)
        except InputError as e:
            raise RunStoreError(f"{path}: the run's copy of the study no longer validates ({e}); {REFIT}") from None

    @property
    def observations_path(self) -> Path:
        return self.path / OBSERVATIONS_COPY

    def posterior_path(self, hypothesis: str) -> Path:
        path = self.path / POSTERIOR_DIR / f"{hypothesis}.nc"
        if not Path(os.path.abspath(path)).parent == Path(os.path.abspath(self.path / POSTERIOR_DIR)):
            raise RunStoreError(f"hypothesis id {hypothesis[:80]!r} cannot name a file in {self.path / POSTERIOR_DIR}")
        if path.is_dir():
            raise RunStoreError(f"{path}: is a directory, not a posterior file. {REFIT}")
        if not path.is_file():
            raise RunStoreError(f"{path}: missing; the run has no posterior for hypothesis '{hypothesis}'. {REFIT}")
        return path

    def open_posterior(self, hypothesis: str, group: str = "posterior"):
        """One group of a hypothesis's stored DataTree as a loaded xarray Dataset."""
        import xarray as xr

        path = self.posterior_path(hypothesis)
        try:
            with xr.open_dataset(path, group=group, engine="h5netcdf") as ds:
                return ds.load()
        except (OSError, ValueError, KeyError) as e:
            raise RunStoreError(
                f"{path}: unreadable posterior file ({type(e).__name__}); it is damaged or truncated. {REFIT}"
            ) from None

    def open_tree(self, hypothesis: str):
        """A hypothesis's whole stored ``xarray.DataTree`` (loaded into memory)."""
        import xarray as xr

        path = self.posterior_path(hypothesis)
        try:
            with xr.open_datatree(path, engine="h5netcdf") as tree:
                return tree.load()
        except (OSError, ValueError, KeyError) as e:
            raise RunStoreError(
                f"{path}: unreadable posterior file ({type(e).__name__}); it is damaged or truncated. {REFIT}"
            ) from None

    def read_json(self, name: str, schema: int | None = None) -> dict | None:
        """An analysis file of the run, or None when the run does not have it."""
        path = self.path / name
        if not path.exists():
            return None
        data = _read_json(path, name)
        if schema is not None and data.get("schema_version") != schema:
            raise RunStoreError(
                f"{path}: schema {data.get('schema_version')!r}, this forecast reads {schema}; "
                "run the command that wrote it again"
            )
        return data

    def has(self, name: str) -> bool:
        return (self.path / name).is_file()

    # --- the one rule ------------------------------------------------------------------------------

    def mismatches(self, study: Study, observations_sha256: str | None) -> list[str]:
        """What differs between this run's inputs and the current ones (empty: the run matches)."""
        changed = []
        if (
            observations_sha256 is not None
            and self.manifest.get("observations", {}).get("sha256") != observations_sha256
        ):
            changed.append("the observations have changed")
        try:
            if fitting_content(self.stored_study()) != fitting_content(study):
                changed.append(
                    "the study's model (time, groups, domains, reliability, evidence initiators, [model] options, hypotheses or "
                    "constraint hypotheses) has changed"
                )
        except RunStoreError:
            changed.append("the run's copy of the study no longer validates")
        return changed

    def check_inputs(self, study: Study, observations_sha256: str | None) -> StoredRun:
        """This run, or a RunStoreError (exit 2) saying which input changed since when."""
        changed = self.mismatches(study, observations_sha256)
        if changed:
            since = f" (created {self.created})" if self.created else ""
            raise RunStoreError(
                f"run {self.path} does not match the current inputs: {'; '.join(changed)} since it was "
                f"written{since}. {REFIT[0].upper() + REFIT[1:]}."
            )
        return self

    # --- adding an analysis to the run -----------------------------------------------------------

    def write_json(self, name: str, obj: object) -> Path:
        """Add or replace ``name`` in this run, atomically (strict JSON)."""
        return atomic_write_text(self.path / name, dumps(obj) + "\n")

    def write_with(self, name: str, writer) -> Path:
        return atomic_write_with(self.path / name, writer)


__all__ = ["StoredRun", "fitting_content", "REFIT"]
