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


def test_the_project_plan_is_found_by_identity_not_by_the_working_directory(tmp_path,
                                                                          monkeypatch):
    from fmtc.plan import find_project_plan, is_plan_file

    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    (repo / "book").mkdir()
    (repo / "notebooks" / "deep").mkdir(parents=True)
    (repo / "_config.yml").write_text("default_profile: smoke\nprofiles:\n"
                                      "  smoke: {train: {epochs: 3}}\n")
    (repo / "book" / "_config.yml").write_text("title: a book\nauthor: someone\n")
    assert not is_plan_file(repo / "book" / "_config.yml")
    for start in (repo, repo / "book", repo / "notebooks" / "deep"):
        assert find_project_plan(start) == repo / "_config.yml"
        monkeypatch.chdir(start)
        plan = load_plan()
        assert plan.profile == "smoke" and plan.train.epochs == 3
        assert plan.path("data") == repo / "data"
    # The search stops at the repository root: a plan above it is not this project's.
    (tmp_path / "_config.yml").write_text("profiles: {quick: {train: {epochs: 9}}}\n")
    (repo / "_config.yml").unlink()
    assert find_project_plan(repo / "book") is None
    monkeypatch.chdir(repo / "book")
    assert load_plan("quick").train.epochs != 9


def test_the_repository_plan_is_an_experiment_plan_and_the_book_config_is_not():
    from pathlib import Path

    from fmtc.plan import find_project_plan, is_plan_file

    root = Path(__file__).resolve().parents[1]
    assert is_plan_file(root / "_config.yml")
    assert not is_plan_file(root / "book" / "_config.yml")
    assert find_project_plan(root / "book") == root / "_config.yml"


def test_execution_and_experiment_sections_have_one_default():
    smoke = load_plan("smoke")
    assert smoke.evaluation.honest_epoch == "last"
    assert smoke.execution.threads_per_worker == 1
    with pytest.raises(PlanError, match="execution.n_jobs"):
        smoke.replace(execution={"n_jobs": 0})
