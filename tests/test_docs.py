"""The examples in the docstrings and the README run as written."""

import doctest
import json
import re
from pathlib import Path

import replaymask.core.gms


def test_gms_docstring_examples_run():
    failures, attempted = doctest.testmod(replaymask.core.gms)
    assert attempted > 0 and failures == 0


def test_readme_python_examples_run(tmp_path, monkeypatch, real_mnist):
    """Every ```python block, as written: the loss in a training loop, the Python API on
    real Seq-MNIST (a run, a sweep into a database, reading it back), a method's
    declaration."""
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
    assert len(blocks) >= 3, "README's python examples are missing"
    monkeypatch.chdir(tmp_path)  # the sweep example writes example.db
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {})
    assert (tmp_path / "example.db").is_file()


def test_readme_sweep_example_is_a_valid_sweep(tmp_path):
    from replaymask.experiments.sweep import load_sweep

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", readme, flags=re.S)
    assert blocks
    for number, block in enumerate(blocks):
        path = tmp_path / f"example{number}.yaml"
        path.write_text(block)
        assert len(load_sweep(path)) > 0


def test_the_own_data_guide_runs_as_written(tmp_path, monkeypatch, real_fashion_mnist):
    """docs/own-data.md's worked example, block by block, in a fresh folder: the module
    (```python fashion.py), the Python session, the command lines and the sweep file."""
    import os
    import shlex
    import subprocess
    import sys

    guide = (Path(__file__).resolve().parent.parent / "docs" / "own-data.md").read_text()
    blocks = re.findall(r"```(\w+)( [\w.-]+)?\n(.*?)```", guide, flags=re.S)
    assert [kind for kind, _, _ in blocks] == ["python", "python", "bash", "yaml", "bash"]
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    for kind, name, text in blocks:
        if name.strip():
            (tmp_path / name.strip()).write_text(text)
        elif kind == "python":
            exec(compile(text, "own-data.md", "exec"), {})
        else:
            for command in text.replace("\\\n", " ").strip().splitlines():
                done = subprocess.run(shlex.split(command), capture_output=True, text=True,
                                      cwd=tmp_path, env=env, timeout=900)
                assert done.returncode == 0, (command, done.stderr[-2000:])
    run = json.loads((tmp_path / "fashion-run" / "result.json").read_text())
    assert run["benchmark"]["task_sizes"] == [2, 3, 2, 3]
    assert run["benchmark"]["origin"]["registered"] == "fmnist-uneven"
    assert run["network"]["name"] == "small-cnn"
    report = (tmp_path / "fashion-report" / "report.md").read_text()
    assert "fmnist-uneven@" in report and "ER [net=small-cnn@" in report and "lr=0.05" in report
    assert "GMS" in report
    sys.modules.pop("fashion", None)
