"""benchmarks/vs_mammoth.py --ours-again-before: after a change to a method's arithmetic,
replaymask's side is run again, and only the runs recorded before the change are set aside."""

import importlib.util
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "vs_mammoth.py"


@pytest.fixture
def vs_mammoth():
    spec = importlib.util.spec_from_file_location("vs_mammoth_under_test", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def commits(folder: Path, count: int) -> list[str]:
    def git(*args):
        return subprocess.run(["git", *args], cwd=folder, check=True, capture_output=True,
                              text=True).stdout.strip()
    git("init", "-q")
    made = []
    for number in range(count):
        git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty",
            "-m", str(number))
        made.append(git("rev-parse", "HEAD"))
    return made


def run(seed, commit, class_il):
    return {"seed": seed, "class_il": class_il, "task_il": 90.0, "wall_s": 1.0,
            "replaymask_commit": commit}


def test_runs_before_the_change_are_set_aside_and_later_ones_kept(vs_mammoth, tmp_path,
                                                                  monkeypatch):
    old, change, later = commits(tmp_path, 3)
    monkeypatch.setattr(vs_mammoth, "REPO", tmp_path)
    seeds = [0, 1, 2]
    record = {"seeds": seeds,
              "replaymask": vs_mammoth.tool_summary(
                  [run(0, old, 50.0), run(1, later, 60.0), run(2, change, 70.0)], seeds),
              "replaymask_variants": [{"name": "variant", **vs_mammoth.tool_summary(
                  [run(0, old, 40.0)], seeds)}]}
    vs_mammoth.set_aside_runs_before(record, change, "2026-12-04T00:00:00+00:00")
    # kept: the runs at the change and after it, summarised again
    assert record["replaymask"]["seeds"] == [1, 2]
    assert record["replaymask"]["class_il"] == [60.0, 70.0]
    assert "runs" not in record["replaymask_variants"][0]  # its only run was before
    earlier = record["earlier_replaymask"]
    assert [(entry["name"], [r["seed"] for r in entry["runs"]]) for entry in earlier] == [
        ("replaymask", [0]), ("variant", [0])]
    assert all(change in entry["superseded"] for entry in earlier)
    # resumable: nothing more to set aside
    vs_mammoth.set_aside_runs_before(record, change, "2026-12-04T00:00:00+00:00")
    assert len(record["earlier_replaymask"]) == 2
