"""The examples in the docstrings and the README run as written."""

import doctest
import re
from pathlib import Path

import replaymask.core.gms


def test_gms_docstring_examples_run():
    failures, attempted = doctest.testmod(replaymask.core.gms)
    assert attempted > 0 and failures == 0


def test_readme_library_example_runs():
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
    assert blocks, "README has no python example"
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {})


def test_readme_sweep_example_is_a_valid_sweep(tmp_path):
    from replaymask.experiments.sweep import load_sweep

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", readme, flags=re.S)
    assert blocks
    for number, block in enumerate(blocks):
        path = tmp_path / f"example{number}.yaml"
        path.write_text(block)
        assert len(load_sweep(path)) > 0
