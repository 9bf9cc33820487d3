"""Defaults that depend on the mode (stylepipe/defaults.py), as a plan resolves them."""

from __future__ import annotations

from pathlib import Path

from stylepipe.optimize import Pyramid

from test_plan import make, project  # noqa: F401 - the fixture is used by name


def test_transfer_defaults_are_50_single_scale_steps(project: Path) -> None:
    plan = make(project, """
        content: content/
        styles: [styles/the_scream.jpg]
        """)
    assert plan.settings.optimize.steps == 50
    assert plan.settings.pyramid == Pyramid(levels=1)
    assert [(t.name, t.weight) for t in plan.terms] == [("content", 1.0), ("style", 200.0), ("tv", 10.0)]


def test_noise_start_modes_default_to_350_steps_coarse_to_fine_from_soft_noise(project: Path) -> None:
    plan = make(project, """
        mode: palette
        styles: [styles/the_scream.jpg]
        """)
    assert plan.settings.optimize.steps == 350
    assert plan.settings.pyramid == Pyramid(levels=3, factor=2.0)
    assert plan.settings.pyramid.split(350, 3) == [200, 100, 50]
    assert plan.settings.init == "noise" and plan.settings.noise == 0.3


def test_explicit_settings_beat_the_mode_defaults(project: Path) -> None:
    plan = make(project, """
        mode: palette
        styles: [styles/the_scream.jpg]
        optimize: {steps: 20, noise: 1.0, pyramid: {levels: 2}}
        """)
    assert plan.settings.optimize.steps == 20 and plan.settings.noise == 1.0
    assert plan.settings.pyramid == Pyramid(levels=2, factor=2.0)
    transfer = make(project, """
        content: content/
        styles: [styles/the_scream.jpg]
        """, "optimize.pyramid.levels=3")
    assert transfer.settings.optimize.steps == 50 and transfer.settings.pyramid.levels == 3
