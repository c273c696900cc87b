"""The fused strong-data density (forecast/model/coordinates.py) is the model built from PyTensor ops.

In every configuration of coordinates (domains centred or the model's own, the walk absent, its
own increments, in levels, in modes, or levels beside modes; with and without a trend; Normal and
StudentT tilt priors), a model whose density is the fused Op has the same log density and the
same gradient as the model built from ordinary PyTensor ops (whose gradient PyTensor derives),
at random points; and Numba's compilation of the Op (what nutpie runs) agrees with Python's.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytensor
import pytest

from forecast.model.build import (
    Centring,
    build_model,
    family_signature,
    prior_values,
    time_weights,
    walk_modes,
)
from forecast.spec.priors import Prior
from tests.test_centring import two_event_study

# (domains centred per group, walk in levels per group, modes?) for the two groups of the mini study
LAYOUTS = {
    "levels_and_modes": ([[True, False], [False, False]], [True, False], True),
    "levels_only": ([[True, True], [False, True]], [True, False], False),
    "modes_only": ([[False, True], [True, True]], [False, False], True),
    "domains_only": ([[True, False], [False, True]], [False, False], False),
    "walk_only_levels": ([[False, False], [False, False]], [False, True], False),
    "walk_only_modes": ([[False, False], [False, False]], [False, False], True),
}


def _centring(study, layout: str, rng) -> Centring:
    domain, levels, modes = (np.array(x) for x in LAYOUTS[layout])
    n_g, n_d, n_q = len(study.groups), len(study.domains), study.time.n_quarters
    info = rng.uniform(0.0, 40.0, size=(n_g, n_d, n_q))
    walk = "random_walk" in study.time.components
    steps = np.repeat(levels[:, None], n_q - 1, axis=1) if walk else np.zeros((n_g, n_q - 1), bool)
    return Centring(
        domain=domain,
        steps=steps,
        weights=time_weights(info, levels),
        modes=~levels if modes and walk else None,
        walk=walk_modes(info.sum(axis=1), study.time.reference - study.time.start, drift=~levels)
        if modes and walk
        else None,
    )


def _studies(tmp_path):
    study, cells = two_event_study(tmp_path)
    t = study.time
    student = {
        k: (Prior("StudentT", {"nu": 4.0, "mu": v.kwargs["mu"], "sigma": v.kwargs["sigma"]}) if k[0] == "tilt" else v)
        for k, v in study.hypotheses[0].priors.items()
    }
    return {
        "trend_and_walk": (study, cells),
        "walk_no_trend": (replace(study, time=replace(t, components=("random_walk",))), cells),
        "trend_no_walk": (replace(study, time=replace(t, components=("trend",))), cells),
        "student_tilt": (
            replace(study, hypotheses=(replace(study.hypotheses[0], priors=student), *study.hypotheses[1:])),
            cells,
        ),
    }


def _logp_and_gradient(model, mode=None):
    logp = model.logp()
    grad = pytensor.grad(logp, model.value_vars)
    return pytensor.function(model.value_vars, [logp, *grad], mode=mode, on_unused_input="ignore")


CASES = [("trend_and_walk", layout) for layout in sorted(LAYOUTS)] + [
    ("walk_no_trend", "levels_and_modes"),
    ("walk_no_trend", "modes_only"),
    ("trend_no_walk", "domains_only"),
    ("student_tilt", "levels_and_modes"),
    ("student_tilt", "walk_only_modes"),
]


NUMBA_CASES = {
    ("trend_and_walk", "levels_and_modes"),
    ("walk_no_trend", "modes_only"),
    ("student_tilt", "walk_only_modes"),
}


@pytest.mark.slow
@pytest.mark.parametrize(("variant", "layout"), CASES)
def test_the_fused_density_and_gradient_equal_the_pytensor_models(tmp_path, layout, variant):
    study, cells = _studies(tmp_path)[variant]
    rng = np.random.default_rng(7)
    centred = _centring(study, layout, rng)
    h = study.hypotheses[0]
    sig, values = family_signature(study, h), prior_values(study, h)
    fused = build_model(study, cells, sig, values, centred=centred, fused=True)
    reference = build_model(study, cells, sig, values, centred=centred, fused=False)
    assert [v.name for v in fused.value_vars] == [v.name for v in reference.value_vars]
    # Python implementations for the reference (no C compilation: the models are tiny)
    f_fused, f_reference = _logp_and_gradient(fused, "FAST_COMPILE"), _logp_and_gradient(reference, "FAST_COMPILE")
    # Numba (what nutpie runs) on a few configurations: each compilation of the whole graph takes seconds
    f_numba = _logp_and_gradient(fused, mode="NUMBA") if (variant, layout) in NUMBA_CASES else None
    start = fused.initial_point()
    for _ in range(3):
        point = [rng.normal(0.0, 0.7, size=np.shape(start[v.name])) for v in fused.value_vars]
        want = f_reference(*point)
        for got in [f(*point) for f in (f_fused, f_numba) if f is not None]:
            assert float(got[0]) == pytest.approx(float(want[0]), rel=1e-11, abs=1e-9)
            for var, g, w in zip(fused.value_vars, got[1:], want[1:], strict=True):
                np.testing.assert_allclose(g, w, rtol=1e-9, atol=1e-9, err_msg=var.name)


def test_a_model_with_strong_data_uses_the_fused_density_and_one_without_does_not(tmp_path):
    from forecast.model.coordinates import CoordinateLoglik

    study, cells = two_event_study(tmp_path)
    h = study.hypotheses[0]
    sig, values = family_signature(study, h), prior_values(study, h)

    def ops(model):
        graph = pytensor.graph.basic.ancestors([model.logp()])
        return {type(v.owner.op).__name__ for v in graph if v.owner is not None}

    strong = build_model(
        study, cells, sig, values, centred=_centring(study, "levels_and_modes", np.random.default_rng(1))
    )
    assert CoordinateLoglik.__name__ in ops(strong) and "CellLoglik" not in ops(strong)
    plain = build_model(study, cells, sig, values)
    assert "CellLoglik" in ops(plain) and CoordinateLoglik.__name__ not in ops(plain)
