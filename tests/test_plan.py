"""The experiment plan: built-in profiles, project overrides and clear errors."""

from __future__ import annotations

import pytest

from fmtc.plan import PlanError, load_plan


def test_builtin_profiles_resolve_without_a_plan_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("smoke", "quick", "paper"):
        plan = load_plan(name)
        assert plan.profile == name
    assert load_plan("paper").train.epochs == 100
    assert load_plan("paper").brainlm.source == "vandijklab/brainlm/old_13M"
    assert load_plan().profile == "quick"


def test_project_file_overrides_key_by_key_and_adds_profiles(tmp_path):
    plan_file = tmp_path / "_config.yml"
    plan_file.write_text(
        "default_profile: mine\n"
        "profiles:\n"
        "  quick: {train: {epochs: 7}}\n"
        "  mine: {extends: smoke, evaluation: {repeats: 4}}\n")
    quick = load_plan("quick", plan_file)
    assert quick.train.epochs == 7 and quick.train.batch_size == 8
    mine = load_plan(path=plan_file)
    assert mine.profile == "mine" and mine.evaluation.repeats == 4
    assert mine.connectivity.pool_size == load_plan("smoke", plan_file).connectivity.pool_size
    assert mine.path("data/runs") == tmp_path / "data/runs"


@pytest.mark.parametrize(("text", "key"), [
    ("profiles: {quick: {train: {epochz: 3}}}", "train.epochz"),
    ("profiles: {quick: {train: {epochs: many}}}", "train.epochs"),
    ("profiles: {quick: {evaluation: {selection: cheat}}}", "evaluation.selection"),
    ("profiles: {quick: {windows: {length: 210}}}", "windows.length"),
    ("profiles: {quick: {simulation: {responder_fraction: 1.5}}}",
     "simulation.responder_fraction"),
    ("profile: quick", "profile"),
])
def test_unknown_key_or_bad_value_names_the_key(tmp_path, text, key):
    plan_file = tmp_path / "plan.yml"
    plan_file.write_text(text + "\n")
    with pytest.raises(PlanError, match=key.replace(".", r"\.")):
        load_plan("quick", plan_file)


def test_unknown_profile_lists_the_known_ones(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(PlanError, match="smoke"):
        load_plan("fast")


def test_replace_validates_changes():
    plan = load_plan("smoke")
    assert plan.replace(evaluation={"repeats": 3}).evaluation.repeats == 3
    with pytest.raises(PlanError, match="evaluation.repeats"):
        plan.replace(evaluation={"repeats": 0})
