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


# --------------------------------------------------------------------------- the YAML loader


def write_bomb(path, levels: int, width: int = 9):
    """Anchors nested ``levels`` deep under ``base.data.label`` (one list per level)."""
    lines = ["base:", "  data:", "    label:", f"      - &l0 [{', '.join(['lol'] * width)}]"]
    lines += [f"      - &l{i} [{', '.join([f'*l{i - 1}'] * width)}]" for i in range(1, levels)]
    lines += ["profiles:", "  quick: {seed: 1}"]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_builtin_profiles_keep_their_anchors_and_aliases(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    smoke, quick = load_plan("smoke"), load_plan("quick")
    assert smoke.pretrain.architecture == quick.pretrain.architecture  # &small-brainlm
    assert quick.pretrain.architecture.hidden_size == 32


def test_anchors_merge_keys_and_aliases_within_bounds_still_load(tmp_path):
    plan_file = tmp_path / "plan.yml"
    plan_file.write_text(
        "base:\n"
        "  train: &train {epochs: 3, lr: 0.01}\n"
        "profiles:\n"
        "  quick:\n"
        "    train: {<<: *train, epochs: 5}\n"      # a merge key, overridden: not a duplicate
        "    logistic: {c_grid: &grid [0.1, 1.0]}\n"
        "  mine: {extends: quick, logistic: {c_grid: *grid}}\n")
    plan = load_plan("mine", plan_file)
    assert plan.train.epochs == 5 and plan.train.lr == 0.01
    assert plan.logistic.c_grid == [0.1, 1.0]


def test_a_nine_level_alias_bomb_is_refused_at_once_in_a_short_message(tmp_path):
    import time

    plan_file = write_bomb(tmp_path / "bomb.yml", levels=9)  # 9**9: 387 million values
    assert plan_file.stat().st_size < 2048
    began = time.perf_counter()
    with pytest.raises(PlanError, match=r"bomb\.yml:\d+:\d+: aliases expand") as raised:
        load_plan("quick", plan_file)
    assert time.perf_counter() - began < 1.0
    assert len(f"fmtc experiment: error: {raised.value}".encode()) < 500
    assert "billion laughs" in str(raised.value)


@pytest.mark.parametrize("levels", [5, 6, 7])
def test_alias_bombs_of_every_size_end_quickly(tmp_path, levels):
    import time

    plan_file = write_bomb(tmp_path / "bomb.yml", levels=levels)
    began = time.perf_counter()
    with pytest.raises(PlanError, match="bomb.yml"):
        load_plan("quick", plan_file)
    assert time.perf_counter() - began < 1.0


def test_a_huge_value_is_shown_shortened_in_the_error(tmp_path):
    plan_file = tmp_path / "plan.yml"
    plan_file.write_text("profiles:\n  quick:\n    seed: [" + ", ".join(["'" + "x" * 200 + "'"]
                                                                         * 300) + "]\n")
    with pytest.raises(PlanError, match="plan key 'seed': expected an integer") as raised:
        load_plan("quick", plan_file)
    assert len(str(raised.value).encode()) < 500 and "..." in str(raised.value)


@pytest.mark.parametrize(("text", "match"), [
    ("profiles:\n  quick:\n    train: {epochs: 3}\n    train: {epochs: 5}\n",
     r"plan\.yml:4:5: duplicate key 'train' \(first at line 3\)"),
    ("profiles:\n  quick: {}\nprofiles:\n  mine: {}\n", r"plan\.yml:3:1: duplicate key 'profiles'"),
    ("profiles:\n  quick: {logistic: {c_grid: [1.0], c_grid: [2.0]}}\n", "duplicate key 'c_grid'"),
    ("profiles:\n  quick: &q\n    description: [*q]\n", r"plan\.yml:2:10: an alias names a node"),
    ("profiles:\n  quick:\n    description: " + "[" * 80 + "]" * 80 + "\n", "more than 64 levels"),
    ("profiles:\n  quick:\n    description: " + "[" * 3000 + "]" * 3000 + "\n",
     "nested too deeply"),
])
def test_duplicate_keys_recursive_and_deep_documents_are_refused(tmp_path, text, match):
    plan_file = tmp_path / "plan.yml"
    plan_file.write_text(text)
    with pytest.raises(PlanError, match=match):
        load_plan("quick", plan_file)


def test_a_file_too_large_to_be_a_plan_is_refused_before_it_is_parsed(tmp_path):
    plan_file = tmp_path / "plan.yml"
    plan_file.write_text("profiles: {quick: {}}\n" + "# padding\n" * 120_000)
    with pytest.raises(PlanError, match="too large for a plan file"):
        load_plan("quick", plan_file)


def test_is_plan_file_says_no_to_a_bomb_and_to_a_folder(tmp_path):
    from fmtc.plan import is_plan_file

    assert not is_plan_file(write_bomb(tmp_path / "bomb.yml", levels=9))
    assert not is_plan_file(tmp_path)


@pytest.mark.parametrize(("text", "match"), [
    ("", "is empty"),
    ("# only a comment\n", "is empty"),
    ("{}\n", "is empty"),
])
def test_an_empty_plan_file_is_an_error(tmp_path, text, match):
    plan_file = tmp_path / "plan.yml"
    plan_file.write_text(text)
    with pytest.raises(PlanError, match=match):
        load_plan("quick", plan_file)


def test_a_folder_given_as_plan_file_is_called_a_folder(tmp_path):
    with pytest.raises(PlanError, match="is a folder, not a file"):
        load_plan("quick", tmp_path)


# --------------------------------------------------------------------------- values in range


@pytest.mark.parametrize(("section", "key", "value"), [
    ("train", "lr", ".inf"), ("train", "lr", ".nan"), ("train", "lr", "0"),
    ("train", "weight_decay", "-5"), ("train", "weight_decay", ".inf"),
    ("train", "aux_weight", ".nan"), ("train", "batch_size", "0"),
    ("pretrain", "lr", "-1.0e-3"), ("pretrain", "weight_decay", "-0.1"),
    ("pretrain", "batch_size", "0"), ("pretrain", "n_subjects", "2"),
    ("pretrain", "n_volumes", "5"), ("pretrain", "seed", "-1"),
    ("pretrain", "mask_ratio", ".nan"), ("pretrain", "warmup_fraction", "-.inf"),
    ("logistic", "c_grid", "[.inf]"), ("logistic", "c_grid", "[0.1, .nan]"),
    ("logistic", "c_grid", "[-1.0]"),
    ("evaluation", "inner_validation_fraction", ".nan"), ("evaluation", "bootstrap", "-1"),
    ("evaluation", "permutations", "-3"),
    ("simulation", "tr", ".inf"), ("simulation", "effect_size", ".nan"),
    ("simulation", "study_shift", "-.inf"), ("simulation", "seed", "-1"),
    ("simulation", "seed", "4294967296"), ("simulation", "population_seed", "-2"),
    ("simulation", "effect_size", "1e400"),
    ("windows", "stride", "0"), ("windows", "max_windows", "-1"),
    ("brainlm", "n_shuffles", "0"), ("brainlm", "batch_size", "-8"),
    ("brainlm", "source", "''"),
    ("connectivity", "pool_size", "1"),
    ("execution", "threads_per_worker", "0"), ("execution", "n_jobs", "-2"),
    ("execution", "dask_scheduler", "''"),
])
def test_every_number_is_finite_and_in_range(tmp_path, section, key, value):
    plan_file = tmp_path / "plan.yml"
    plan_file.write_text(f"profiles:\n  quick:\n    {section}: {{{key}: {value}}}\n")
    with pytest.raises(PlanError, match=rf"plan key '{section}\.{key}(\[\d+\])?'"):
        load_plan("quick", plan_file)


@pytest.mark.parametrize(("value", "match"), [
    ("{hidden_size: 0}", "hidden_size"),
    ("{num_attention_heads: 3}", "hidden_size.*not divisible by num_attention_heads"),
    ("{hidden_size: 33, decoder_hidden_size: 33, num_attention_heads: 3, "
     "decoder_num_attention_heads: 3}", "hidden_size.*even"),
    ("{decoder_hidden_size: 128}", "decoder_hidden_size.*must equal hidden_size"),
    ("{intermediate_size: -1}", "intermediate_size"),
])
def test_the_brainlm_architecture_is_checked_when_read(tmp_path, value, match):
    plan_file = tmp_path / "plan.yml"
    plan_file.write_text(f"profiles:\n  quick:\n    pretrain: {{architecture: {value}}}\n")
    with pytest.raises(PlanError, match=rf"pretrain\.architecture\.{match}"):
        load_plan("quick", plan_file)


@pytest.mark.parametrize(("text", "key"), [
    ("seed: -1", "seed"),
    ("seed: 4294967295", "seed"),  # its fold seeds would pass 2**32 - 1
    ("{seed: 4294967295, evaluation: {repeats: 1, folds: 2}}", "seed"),
])
def test_the_plan_seed_leaves_room_for_the_fold_seeds(tmp_path, text, key):
    plan_file = tmp_path / "plan.yml"
    body = text if text.startswith("{") else "{" + text + "}"
    plan_file.write_text(f"profiles:\n  quick: {body}\n")
    with pytest.raises(PlanError, match=rf"plan key '{key}': must lie in 0\.\."):
        load_plan("quick", plan_file)
    ok = tmp_path / "ok.yml"
    ok.write_text("profiles:\n  quick: {seed: 4294966295, evaluation: {repeats: 1, folds: 2}}\n")
    assert load_plan("quick", ok).seed == 4294966295


# --------------------------------------------------------------------------- models, outputs


@pytest.mark.parametrize(("text", "match"), [
    ("evaluation: {models: [fc-logreg, resnet-9000]}",
     r"plan key 'evaluation\.models': unknown model\(s\) \['resnet-9000'\]"),
    ("experiments: {x: {arms: {big: {model: resnet-9000}}}}",
     r"plan key 'experiments\.x\.arms\.big\.model': unknown model"),
    ("model_params: {resnet-9000: {depth: 9000}}",
     r"plan key 'model_params\.resnet-9000': unknown model"),
    ("model_params: {fc-logreg: {c_grid: [1.0]}}",
     r"model_params\.fc-logreg'.*reads its settings from plan section 'logistic'"),
])
def test_unknown_models_are_refused_when_the_plan_is_read(tmp_path, text, match):
    plan_file = tmp_path / "plan.yml"
    plan_file.write_text(f"profiles:\n  quick: {{{text}}}\n")
    with pytest.raises(PlanError, match=match):
        load_plan("quick", plan_file)


def test_model_params_of_a_registered_model_are_validated_when_read(tmp_path):
    from dataclasses import dataclass

    from fmtc.predict.registry import ModelSpec, register, unregister

    @dataclass(frozen=True)
    class Params:
        depth: int = 2
        rate: float = 0.5

    register(ModelSpec("toy-plan", "Toy", ("fc",), factory=lambda p, c: None, params=Params))
    try:
        plan_file = tmp_path / "plan.yml"
        plan_file.write_text("profiles:\n  quick: {model_params: {toy-plan: {rate: .inf}}}\n")
        with pytest.raises(PlanError, match=r"model_params\.toy-plan\.rate': must be a finite"):
            load_plan("quick", plan_file)
        plan_file.write_text("profiles:\n  quick: {model_params: {toy-plan: {depth: 3}}}\n")
        assert load_plan("quick", plan_file).model_params == {"toy-plan": {"depth": 3}}
    finally:
        unregister("toy-plan")


@pytest.mark.parametrize(("key", "value"), [
    ("runs_dir", "/"), ("data_dir", "/"), ("features_dir", "'~'"), ("book_dir", "'~/'"),
    ("cohorts_dir", "/.."), ("models_dir", "HOME"),
])
def test_an_output_folder_may_not_be_the_root_or_the_home_folder(tmp_path, monkeypatch,
                                                                 key, value):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    value = str(home) if value == "HOME" else value
    plan_file = tmp_path / "plan.yml"
    plan_file.write_text(f"profiles:\n  quick: {{outputs: {{{key}: {value}}}}}\n")
    with pytest.raises(PlanError, match=rf"plan key 'outputs\.{key}': .* is (the file-system "
                                        "root|your home folder)"):
        load_plan("quick", plan_file)


def test_an_output_folder_inside_the_home_folder_is_fine(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    plan_file = tmp_path / "plan.yml"
    plan_file.write_text("profiles:\n  quick: {outputs: {runs_dir: ~/runs}}\n")
    assert load_plan("quick", plan_file).path("~/runs") == tmp_path / "runs"
