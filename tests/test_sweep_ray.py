"""The Ray backend passes the same sweep test as the local one, on a real local cluster."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

from replaymask import cli
from replaymask.experiments.store import ResultsStore

ray_cli = shutil.which("ray", path=os.path.dirname(sys.executable)) or shutil.which("ray")
pytestmark = pytest.mark.skipif(ray_cli is None, reason="Ray is not installed")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory):
    """`ray start --head` on loopback, in its own process group; stopped afterwards."""
    port = free_port()
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    head = subprocess.Popen(
        [ray_cli, "start", "--head", "--block", f"--port={port}", "--node-ip-address=127.0.0.1",
         "--num-cpus=2", "--include-dashboard=false", "--disable-usage-stats",
         f"--temp-dir={tmp_path_factory.mktemp('ray')}"],
        env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    address = f"127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.5)
    else:
        os.killpg(head.pid, signal.SIGKILL)
        pytest.fail("the Ray head did not come up")
    yield address
    os.killpg(head.pid, signal.SIGTERM)
    try:
        head.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(head.pid, signal.SIGKILL)


SWEEP = "model: [sgd, er]\nbuffer_size: 10\nseed: [0, 1]\ngms: [false, true]\n"


def sweep(args, env):
    return subprocess.run([sys.executable, "-m", "replaymask", "sweep", *args, "--no-progress"],
                          capture_output=True, text=True, timeout=600, env=env)


def test_ray_backend_runs_resumes_and_matches_the_local_backend(ray_cluster, tmp_path,
                                                                 mnist_like_root):
    sweep_file = tmp_path / "sweep.yaml"
    sweep_file.write_text(SWEEP)
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    common = [str(sweep_file), "--data-root", str(mnist_like_root)]
    on_ray = sweep([*common, "--db", str(tmp_path / "ray.db"), "--ray-address", ray_cluster], env)
    assert on_ray.returncode == 0, on_ray.stderr
    assert "8 run now (0 failed)" in on_ray.stdout
    again = sweep([*common, "--db", str(tmp_path / "ray.db"), "--ray-address", ray_cluster], env)
    assert "8 already done, 0 run now" in again.stdout
    local = sweep([*common, "--db", str(tmp_path / "local.db"), "--workers", "2"], env)
    assert local.returncode == 0, local.stderr

    def metrics(db):
        return {r["config_hash"]: json.dumps(r["metrics"], sort_keys=True)
                for r in ResultsStore(db).runs()}

    ray_metrics = metrics(tmp_path / "ray.db")
    assert len(ray_metrics) == 8
    assert ray_metrics == metrics(tmp_path / "local.db")  # same runs, same numbers


def test_an_unreachable_ray_address_is_exit_2_and_the_database_untouched(tmp_path, capsys):
    sweep_file = tmp_path / "sweep.yaml"
    sweep_file.write_text(SWEEP)
    db = tmp_path / "r.db"
    code = cli.main(["sweep", str(sweep_file), "--db", str(db), "--ray-address",
                     f"127.0.0.1:{free_port()}"])
    err = capsys.readouterr().err
    assert code == 2 and "no Ray cluster reachable" in err and err.count("\n") == 1
    assert not db.exists()
    assert cli.main(["sweep", str(sweep_file), "--db", str(db), "--ray-address", "nowhere"]) == 2
    assert "HOST:PORT" in capsys.readouterr().err


def test_ray_runs_write_their_tensorboard_logs_each_into_its_own_folder(ray_cluster, tmp_path,
                                                                        mnist_like_root):
    pytest.importorskip("tensorboard")
    sweep_file = tmp_path / "sweep.yaml"
    sweep_file.write_text("model: er\nbuffer_size: 10\nseed: [0, 1]\ngms: [false, true]\n")
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    tensorboard = tmp_path / "tb"
    on_ray = sweep([str(sweep_file), "--data-root", str(mnist_like_root), "--db",
                    str(tmp_path / "ray.db"), "--ray-address", ray_cluster, "--tensorboard",
                    str(tensorboard)], env)
    assert on_ray.returncode == 0, on_ray.stderr
    hashes = {r["config_hash"][:8] for r in ResultsStore(tmp_path / "ray.db").runs()}
    folders = sorted(tensorboard.iterdir())
    assert {folder.name.rsplit("_", 1)[1] for folder in folders} == hashes
    assert all(list((folder / "hparams").glob("events.out.tfevents.*")) for folder in folders)


def test_ray_tasks_import_the_users_module_named_in_the_sweep_file(ray_cluster, tmp_path):
    """The module lies in the sweep's folder, not on the Ray workers' path: each task
    imports it from there before its run."""
    from .test_plugins import PLUGIN

    (tmp_path / "my_ray_plugin.py").write_text(PLUGIN)
    sweep_file = tmp_path / "sweep.yaml"
    sweep_file.write_text("import: [my_ray_plugin]\nmodel: er\ndataset: blobs\nlr: 0.05\n"
                          "buffer_size: 20\nbackbone: wide-mlp\nseed: [0, 1]\n")
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    on_ray = sweep([str(sweep_file), "--db", str(tmp_path / "ray.db"), "--ray-address",
                    ray_cluster], env)
    assert on_ray.returncode == 0, on_ray.stderr + on_ray.stdout
    runs = ResultsStore(tmp_path / "ray.db").runs()
    assert [run["status"] for run in runs] == ["done", "done"]
    assert {run["result"]["benchmark"]["origin"]["module"] for run in runs} == {"my_ray_plugin"}
