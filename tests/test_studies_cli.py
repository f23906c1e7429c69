"""Every study's command line: --help exits 0, a bad value is one line and exit code 2 (no
traceback, before any heavy work), --seeds are seed ids, and a stored summary never shrinks."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys

import pytest

from mtl_tutorial.studies import ROOT
from mtl_tutorial.studies.__main__ import STUDIES
from mtl_tutorial.studies.cli import run, seed_ids, seeds_text

ENTRY_POINTS = tuple(STUDIES)  # every study `python -m mtl_tutorial.studies` lists


def call(name: str, argv: list[str]) -> int:
    """What ``python -m mtl_tutorial.studies.NAME ARGV`` exits with, run in this process."""
    main = importlib.import_module(f"mtl_tutorial.studies.{name}").main
    try:
        return run(main, argv, prog=f"python -m mtl_tutorial.studies.{name}")
    except SystemExit as exit_:  # argparse: --help (0) or a bad value (2)
        return exit_.code


OUT = ["--out", "{tmp}/out.json"]
RUNS = ["--runs", "{tmp}/runs"]
BAD_ARGUMENTS = [  # (study, arguments, a word the one-line message must hold); {tmp} holds a_file
    ("digits", ["--seeds", "abc", *OUT], "--seeds"),
    ("digits", ["--seeds", "3-1", *OUT], "backwards"),
    ("digits", ["--sizes", "abc", *OUT], "--sizes"),
    ("digits", ["--sizes", "5", *OUT], "between 10"),
    ("digits", ["--sizes", "5000", *OUT], "1198"),
    ("digits", ["--auxiliary", "colour", *OUT], "--auxiliary"),
    ("digits", ["--threads", "0", *OUT], "--threads"),
    ("digits", ["--steps", "-1", *OUT], "--steps"),
    ("digits", ["--out", "{tmp}"], "folder"),
    ("digits", ["--out", "{tmp}/a_file/out.json"], "not a folder"),
    ("gridworld", ["--sizes", "abc", *OUT], "'all'"),
    ("gridworld", ["--sizes", "0", *OUT], "--sizes"),
    ("gridworld", ["--seeds", "x", *OUT], "--seeds"),
    ("gridworld", ["--updates", "0", *OUT], "--updates"),
    ("gridworld", ["--threads", "0", *OUT], "--threads"),
    ("fewshot", ["--episodes", "0", *OUT, *RUNS], "--episodes"),
    ("fewshot", ["--episodes", "1", *OUT, *RUNS], "at least 2"),
    ("fewshot", ["--shots", "0", *OUT, *RUNS], "--shots"),
    ("fewshot", ["--threads", "0", *OUT, *RUNS], "--threads"),
    ("fewshot", [*OUT, "--runs", "{tmp}/a_file"], "not a folder"),
    ("sine", ["--meta-steps", "-1", *OUT], "--meta-steps"),
    ("sine", ["--meta-steps", "0", *OUT], "--meta-steps"),
    ("sine", ["--eval-tasks", "1", *OUT], "--eval-tasks"),
    ("sine", ["--methods", "anil", *OUT], "invalid choice"),
    ("sine", ["--threads", "0", *OUT], "--threads"),
    ("toy_record", [], "required"),
    ("toy_record", ["record"], "PATH"),
    ("toy_record", ["record", "{tmp}"], "folder"),
    ("toy_record", ["record", "{tmp}/toy.pt", "--processes", "0"], "--processes"),
    ("toy_record", ["bench", "--steps", "0"], "--steps"),
    ("toy_record", ["frobnicate"], "invalid choice"),
    ("bench", ["--steps", "0", *OUT], "--steps"),
    ("bench", ["--rounds", "0", *OUT], "--rounds"),
    ("bench", ["--threads", "0", *OUT], "--threads"),
    ("bench", ["--trunk", "gru", *OUT], "--trunk"),
    ("bench", ["--torchjd", *OUT], "add --methods"),
    ("bench", ["--architectures", "--methods", *OUT], "--architectures"),
    ("bench", ["--out", "{tmp}"], "folder"),
    ("experiments", [], "name an experiment"),
    ("experiments", ["no_such", *OUT], "invalid choice"),
    ("experiments", ["methods", "--threads", "0", *OUT], "--threads"),
    ("experiments", ["methods", "--seeds", "7", *OUT], "has no seeds [7]"),
    ("experiments", ["methods", "--seeds", "-1", *OUT], "--seeds"),
    ("experiments", ["methods", "--shard", "1", *OUT], "expected K/N"),
    ("experiments", ["methods", "--shard", "2/2", *OUT], "0 <= K < N"),
    ("experiments", ["article_lstm", "--seeds", "0", "--shard", "5/6", *OUT], "selects no run"),
    ("pretrained", ["--groups", "thawed", *OUT], "invalid choice"),
    ("pretrained", ["--steps", "0", *OUT], "--steps"),
    ("pretrained", ["--seeds", "a", *OUT], "--seeds"),
    ("pretrained", ["--threads", "0", *OUT], "--threads"),
]


def test_every_entry_point_is_covered():
    assert {name for name, _, _ in BAD_ARGUMENTS} == set(ENTRY_POINTS)


@pytest.mark.parametrize("name", ENTRY_POINTS)
def test_help_exits_0(name, capsys):
    assert call(name, ["--help"]) == 0
    assert capsys.readouterr().out.startswith(f"usage: python -m mtl_tutorial.studies.{name}")


def test_a_subcommand_has_help_too(capsys):
    assert call("toy_record", ["record", "--help"]) == 0
    assert "--processes" in capsys.readouterr().out


@pytest.mark.parametrize(("name", "template", "word"), BAD_ARGUMENTS,
                         ids=[f"{name} {' '.join(argv)}".replace("{tmp}", "TMP") for name, argv, _ in BAD_ARGUMENTS])
def test_a_bad_value_is_one_line_and_exit_code_2(name, template, word, tmp_path, capsys):
    (tmp_path / "a_file").write_text("")
    argv = [a.replace("{tmp}", str(tmp_path)) for a in template]
    assert call(name, argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1 and "Traceback" not in captured.err, captured.err
    assert lines[0].startswith(f"python -m mtl_tutorial.studies.{name}") and word in lines[0], lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]  # nothing written


# One bad value per command, through the real `python -m`, the processes run side by side.
THROUGH_PYTHON_M = {
    "digits": ["--seeds", "abc"],
    "gridworld": ["--sizes", "abc"],
    "fewshot": ["--episodes", "0"],
    "sine": ["--meta-steps", "-1"],
    "toy_record": ["bench", "--steps", "0"],
    "bench": ["--threads", "0"],
    "experiments": ["methods", "--shard", "1"],
    "pretrained": ["--steps", "0"],
}


@pytest.fixture(scope="module")
def through_python_m(tmp_path_factory):
    out = tmp_path_factory.mktemp("python_m")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("MTL_TUTORIAL_TRACEBACK", None)
    processes = {}
    for name, argv in THROUGH_PYTHON_M.items():
        where = [] if name == "toy_record" else ["--out", str(out / f"{name}.json")]
        processes[name] = subprocess.Popen([sys.executable, "-m", f"mtl_tutorial.studies.{name}", *argv, *where],
                                           cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                           text=True)
    results = {name: (p.wait(timeout=60), *p.communicate()) for name, p in processes.items()}
    assert not list(out.iterdir())
    return results


@pytest.mark.parametrize("name", THROUGH_PYTHON_M)
def test_python_m_turns_a_bad_value_into_one_line_and_exit_code_2(name, through_python_m):
    code, stdout, stderr = through_python_m[name]
    assert code == 2 and stdout == "" and "Traceback" not in stderr, stderr
    assert len(stderr.splitlines()) == 1 and stderr.startswith(f"python -m mtl_tutorial.studies.{name}")
    assert ": error: " in stderr


# ---------------------------------------------------------------- --seeds are seed ids


@pytest.mark.parametrize(("text", "seeds"), [("3", [3]), ("0,1,2", [0, 1, 2]), ("0-7", list(range(8))),
                                             ("2-2", [2]), ("0-2,5", [0, 1, 2, 5])])
def test_seed_ids(text, seeds):
    assert seed_ids(text) == seeds


def test_seeds_flatten_sort_and_deduplicate_and_the_defaults_are_those_of_the_book():
    from mtl_tutorial.studies import digits, gridworld

    assert digits.make_parser().parse_args(["--seeds", "4-5", "0", "1,2", "2"]).seeds == [0, 1, 2, 4, 5]
    assert digits.make_parser().parse_args([]).seeds == list(range(20))
    assert gridworld.make_parser().parse_args([]).seeds == list(range(10))
    assert gridworld.make_parser().parse_args(["--seeds", "0"]).seeds == [0]  # seed 0, not "no seeds"
    assert seeds_text(range(8)) == "0-7" and seeds_text([0, 2]) == "0 2"


# ---------------------------------------------------------------- a stored summary never shrinks

TINY_DIGITS = ["--sizes", "10", "--auxiliary", "loop", "--steps", "3", "--threads", "1"]


def test_digits_with_one_seed_writes_a_summary_without_spread(tmp_path, capsys):
    out = tmp_path / "digits.json"
    assert call("digits", [*TINY_DIGITS, "--seeds", "0", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert [(r["model"], r["seed"]) for r in result["runs"]] == [("multitask", 0), ("single", 0)]
    assert result["summary"][0]["seeds"] == [0] and result["summary"][0]["ci95"] is None
    assert "one seed" in capsys.readouterr().out


def test_digits_with_a_subset_of_seeds_merges_into_the_stored_summary(tmp_path):
    out = tmp_path / "digits.json"
    assert call("digits", [*TINY_DIGITS, "--seeds", "0-2", "--out", str(out)]) == 0
    stored = json.loads(out.read_text())
    assert call("digits", [*TINY_DIGITS, "--seeds", "1", "--out", str(out)]) == 0
    merged = json.loads(out.read_text())
    assert len(merged["runs"]) == len(stored["runs"]) == 6 and merged["summary"] == stored["summary"]
    trained = {r["seed"]: r["trained"] for r in merged["runs"]}
    assert trained[0] == trained[2] != trained[1] and set(merged["trainings"]) == set(trained.values())
    assert merged["trainings"][trained[1]]["command"].endswith("--seeds 1 --auxiliary loop --steps 3 --threads 1")
    assert merged["provenance"]["seeds"] == [0, 1, 2]


def test_digits_refuses_to_mix_or_replace_a_summary_of_another_config(tmp_path, capsys):
    out = tmp_path / "digits.json"
    assert call("digits", [*TINY_DIGITS, "--seeds", "0,1", "--out", str(out)]) == 0
    before = out.read_bytes()
    other = [*TINY_DIGITS[:-4], "--steps", "4", "--threads", "1"]  # another config: nothing to merge with
    for seeds in ("0", "0-3"):  # fewer runs, or more: either would lose the stored ones
        assert call("digits", [*other, "--seeds", seeds, "--out", str(out)]) == 2
        error = capsys.readouterr().err
        assert "holds 4 runs of another config (steps 3 stored, 4 here)" in error and "--force" in error
        assert out.read_bytes() == before
    assert call("digits", [*other, "--seeds", "0", "--out", str(out), "--force"]) == 0
    assert len(json.loads(out.read_text())["runs"]) == 2


def test_the_runs_of_a_summary_stored_before_runs_named_their_training_keep_its_provenance(tmp_path):
    out = tmp_path / "digits.json"
    assert call("digits", [*TINY_DIGITS, "--seeds", "0,1", "--out", str(out)]) == 0
    old = json.loads(out.read_text())
    old["provenance"]["git_commit"] = "an old commit"
    del old["trainings"]
    for r in old["runs"]:
        del r["trained"]
    out.write_text(json.dumps(old))
    assert call("digits", [*TINY_DIGITS, "--seeds", "1", "--out", str(out)]) == 0
    merged = json.loads(out.read_text())
    stored = [r for r in merged["runs"] if r["seed"] == 0]
    assert {r["trained"] for r in stored} == {"recorded with the summary"}
    assert merged["trainings"]["recorded with the summary"]["git_commit"] == "an old commit"
    assert "an old commit" in merged["provenance"]["run_commits"]


# ---------------------------------------------------------------- broken stored files name themselves


def test_a_broken_run_record_names_its_file(tmp_path, capsys):
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / "5way1shot.json").write_text('{"shots": 1, "methods": {')  # truncated
    argv = ["--shots", "1", "--runs", str(runs), "--out", str(tmp_path / "fewshot.json")]
    assert call("fewshot", argv) == 2
    error = capsys.readouterr().err
    assert len(error.splitlines()) == 1 and "Traceback" not in error
    assert str(runs / "5way1shot.json") in error and "delete it and rerun" in error


def test_a_broken_stored_summary_names_its_file(tmp_path, capsys):
    out = tmp_path / "digits.json"
    out.write_text('{"runs": [')
    assert call("digits", [*TINY_DIGITS, "--seeds", "0", "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert str(out) in error and "--force" in error and out.read_text() == '{"runs": ['
