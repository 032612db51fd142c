"""Live logs: the training loop's observer hook, and ``--tensorboard DIR`` on ``run`` and
``sweep``, read back from the event files with TensorBoard's own readers."""

from __future__ import annotations

import json
import sys

import pytest

from replaymask import api, cli
from replaymask.config import resolve
from replaymask.core.methods import method_class
from replaymask.core.training import Checkpointing, TrainingObserver, train
from replaymask.errors import ConfigError

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import (  # noqa: E402
    EventAccumulator,
)
from tensorboard.plugins.hparams import metadata as hparams_metadata  # noqa: E402

from replaymask.experiments.tensorboard import TensorBoardLogger, run_folder  # noqa: E402

ANALYSIS = ("grad_old", "grad_current", "grad_future", "old_class_mass", "old_logit_drift")


def read_events(folder):
    events = EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    return events


def scalars(events, tag) -> list[tuple[int, float]]:
    return [(event.step, event.value) for event in events.Scalars(tag)]


def session_start(events):
    content = events.PluginTagToContent("hparams")[hparams_metadata.SESSION_START_INFO_TAG]
    return hparams_metadata.parse_session_start_info_plugin_data(content)


def session_status(events) -> str:
    from tensorboard.plugins.hparams import api_pb2

    content = events.PluginTagToContent("hparams")[hparams_metadata.SESSION_END_INFO_TAG]
    return api_pb2.Status.Name(hparams_metadata.parse_session_end_info_plugin_data(content).status)


def uninstall(package, monkeypatch):
    """Make ``import package`` (and of its modules) fail, as if it were not installed."""
    for name in [name for name in sys.modules if name.startswith(package + ".")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, package, None)


def run_folders(root):
    return sorted(path for path in root.iterdir() if path.is_dir())


class Recorder(TrainingObserver):
    def __init__(self):
        self.calls = []

    def begin(self, steps_done):
        self.calls.append(("begin", steps_done))

    def loss(self, step, task, mean_loss):
        self.calls.append(("loss", step, task, mean_loss))

    def task_end(self, task, step, accuracy_matrix):
        self.calls.append(("task_end", task, step, accuracy_matrix))

    def analysis(self, record):
        self.calls.append(("analysis", record))


def test_the_observer_hears_every_loss_read_back_task_end_and_analysis_record(tiny):
    recorder = Recorder()
    result = train(resolve(model="er", buffer_size=20, n_epochs=2), tiny, progress=False,
                   analysis=True, observer=recorder)
    kinds = [call[0] for call in recorder.calls]
    assert recorder.calls[0] == ("begin", 0)
    # the tiny benchmark has 6 steps per epoch: one read-back at each epoch's end
    losses = [call for call in recorder.calls if call[0] == "loss"]
    assert [step for _, step, _, _ in losses] == [6 * (epoch + 1) for epoch in range(10)]
    assert [task for _, _, task, _ in losses] == [epoch // 2 for epoch in range(10)]
    task_ends = [call for call in recorder.calls if call[0] == "task_end"]
    assert [(task, step) for _, task, step, _ in task_ends] == [(t, 12 * (t + 1)) for t in range(5)]
    assert task_ends[-1][3] == result.accuracy_matrix
    assert [len(matrix["class_il"]) for *_, matrix in task_ends] == [1, 2, 3, 4, 5]
    assert [call[1] for call in recorder.calls if call[0] == "analysis"] == result.analysis
    assert kinds.count("analysis") == kinds.count("loss")


def test_results_are_identical_with_and_without_tensorboard(mnist_like_root, tmp_path):
    settings = {"model": "derpp", "buffer_size": 20, "gms": True, "seed": 3,
                "data_root": mnist_like_root, "progress": False, "analysis": True}
    logged = api.run(tensorboard=tmp_path / "tb", **settings)
    plain = api.run(**settings)
    assert logged.accuracy_matrix == plain.accuracy_matrix
    assert logged.metrics == plain.metrics
    assert logged.analysis == plain.analysis
    assert len(run_folders(tmp_path / "tb")) == 1


def test_a_run_logs_loss_accuracies_matrix_image_analysis_and_hparams(mnist_like_root,
                                                                     tmp_path, capsys):
    tensorboard, out = tmp_path / "tb", tmp_path / "out"
    code = cli.main(["run", "--model", "er", "--buffer-size", "20", "--gms", "--n-epochs", "2",
                     "--analysis", "--data-root", str(mnist_like_root), "--out", str(out),
                     "--tensorboard", str(tensorboard), "--no-progress"])
    stderr = capsys.readouterr().err
    assert code == 0, stderr
    result = json.loads((out / "result.json").read_text())
    (folder,) = run_folders(tensorboard)
    config = resolve(model="er", buffer_size=20, gms=True, n_epochs=2)
    assert folder.name == f"{config.name}_{config.hash[:8]}" and str(folder) in stderr

    curves = read_events(folder)
    loss = scalars(curves, "train/loss")
    assert len(loss) == 10 and all(value > 0 for _, value in loss)  # 5 tasks x 2 epochs
    assert [step for step, _ in loss] == sorted(step for step, _ in loss)
    matrix = result["accuracy_matrix"]
    for setting in ("class_il", "task_il"):
        for task in range(5):
            logged = scalars(curves, f"{setting}/task_{task + 1}")
            assert [value for _, value in logged] == pytest.approx(
                [row[task] for row in matrix[setting][task:]], abs=1e-4)
        averages = scalars(curves, f"{setting}/average")
        assert [value for _, value in averages] == pytest.approx(
            [sum(row) / len(row) for row in matrix[setting]], abs=1e-4)
        assert len(scalars(curves, f"{setting}/forgetting")) == 4  # from the second task on
    for name in ANALYSIS:
        logged = scalars(curves, f"analysis/{name}")
        expected = [r[name] for r in result["analysis"] if r[name] is not None]
        assert [value for _, value in logged] == pytest.approx(expected, rel=1e-5, abs=1e-6)
    (image,) = curves.Images("accuracy_matrix")
    assert image.encoded_image_string.startswith(b"\x89PNG") and image.width > image.height

    session = read_events(folder / "hparams")
    hparams = session_start(session).hparams
    assert hparams["model"].string_value == "er"
    assert hparams["gms"].bool_value is True
    assert hparams["buffer_size"].number_value == 20
    assert hparams["lr"].number_value == pytest.approx(result["config"]["lr"])
    assert hparams["gms_mask_value"].string_value == "-inf"
    assert "alpha" not in hparams  # None for ER: only values are hyper-parameters
    final_step = loss[-1][0]
    for setting in ("class_il", "task_il"):
        assert scalars(session, setting) == [(final_step, pytest.approx(
            result["metrics"][setting]["average_accuracy"], abs=1e-4))]
        assert scalars(session, f"{setting}_forgetting") == [(final_step, pytest.approx(
            result["metrics"][setting]["forgetting"], abs=1e-4))]
    assert session_status(session) == "STATUS_SUCCESS"


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # TensorBoard's vendored html5lib
def test_a_sweep_writes_each_run_into_its_own_folder_listed_by_the_hparams_view(
        mnist_like_root, tmp_path):
    tensorboard = tmp_path / "tb"
    grid = {"model": "er", "buffer_size": 20, "n_epochs": 1, "gms": [False, True],
            "seed": [0, 1]}
    summary = api.sweep(grid, db=tmp_path / "r.db", workers=2, data_root=mnist_like_root,
                        progress=False, tensorboard=tensorboard)
    assert summary.ran == 4 and summary.failed == 0
    folders = run_folders(tensorboard)
    assert len(folders) == 4
    runs = {record.hash: record for record in api.load_runs(tmp_path / "r.db")}
    for folder in folders:
        hparams = session_start(read_events(folder / "hparams")).hparams
        record = runs[_hash_of(runs, folder)]
        assert hparams["gms"].bool_value == record.config["gms"]
        assert hparams["seed"].number_value == record.config["seed"]

    experiment, groups = hparams_view(tensorboard)
    differing = [info["name"] for info in experiment["hparamInfos"] if info.get("differs")]
    assert sorted(differing) == ["gms", "seed"]
    metrics = sorted(info["name"]["tag"] for info in experiment["metricInfos"])
    assert metrics == ["class_il", "class_il_forgetting", "task_il", "task_il_forgetting"]
    assert len(groups) == 4
    for group in groups:
        record = _hash_of(runs, group["name"].split("/")[0])
        values = {m["name"]["tag"]: m["value"] for m in group["metricValues"]}
        assert values["class_il"] == pytest.approx(
            runs[record].result["metrics"]["class_il"]["average_accuracy"], abs=1e-4)
        assert group["hparams"]["gms"] == runs[record].config["gms"]


def _hash_of(runs, folder) -> str:
    name = getattr(folder, "name", folder)
    (found,) = [key for key in runs if name.endswith("_" + key[:8])]
    return found


def hparams_view(root):
    """What TensorBoard serves its HParams view for ``root`` (the experiment: hyper-parameters
    and metrics; the session groups: one row each), from its own web app, in process."""
    from tensorboard import default, program
    from tensorboard.backend import application
    from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer
    from werkzeug.test import Client

    board = program.TensorBoard(default.get_plugins())
    board.configure(logdir=str(root), load_fast="false")
    multiplexer = plugin_event_multiplexer.EventMultiplexer()
    multiplexer.AddRunsFromDirectory(str(root))
    multiplexer.Reload()
    app = application.TensorBoardWSGIApp(
        board.flags, board.plugin_loaders,
        data_provider.MultiplexerDataProvider(multiplexer, str(root)),
        board.assets_zip_provider, multiplexer)
    client = Client(app)
    experiment = client.post("/data/plugin/hparams/experiment",
                             json={"experimentName": ""}).get_json()
    columns = ([{"hparam": info["name"]} for info in experiment["hparamInfos"]]
               + [{"metric": info["name"]} for info in experiment["metricInfos"]])
    groups = client.post("/data/plugin/hparams/session_groups", json={
        "experimentName": "", "colParams": columns, "startIndex": 0, "sliceSize": 100,
        "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE",
                            "STATUS_RUNNING"]}).get_json()
    return experiment, groups["sessionGroups"]


def test_a_diverging_run_keeps_its_curves_and_stays_out_of_the_hparams_view(
        mnist_like_root, tmp_path, capsys):
    tensorboard = tmp_path / "tb"
    code = cli.main(["run", "--model", "sgd", "--lr", "1e30", "--data-root",
                     str(mnist_like_root), "--out", str(tmp_path / "out"), "--tensorboard",
                     str(tensorboard), "--no-progress"])
    assert code == 3 and "diverged" in capsys.readouterr().err
    (folder,) = run_folders(tensorboard)
    assert read_events(folder).Tags()["scalars"] == []  # it diverged at the first read-back
    assert not (folder / "hparams").exists()


class Crash(Exception):
    pass


def test_a_run_stopped_and_resumed_logs_what_an_uninterrupted_one_does(tiny, tmp_path,
                                                                        monkeypatch):
    config = resolve(model="er", buffer_size=20, n_epochs=2)

    def logged_train(root, **kwargs):
        logger, result = TensorBoardLogger(root, config), None
        try:
            result = train(config, tiny, progress=False, observer=logger, **kwargs)
        finally:
            logger.finish(result)
        return run_folder(root, config)

    clean = logged_train(tmp_path / "clean")
    learner, steps = method_class("er"), []
    original = learner.observe

    def crash_at_step_20(self, *args):
        steps.append(1)
        if len(steps) == 20:  # checkpoints after steps 5, 10, 12 (task end) and 15
            raise Crash
        return original(self, *args)

    monkeypatch.setattr(learner, "observe", crash_at_step_20)
    saving = Checkpointing(tmp_path / "ck", every_steps=5, resume=True, warn=pytest.fail)
    with pytest.raises(Crash):
        logged_train(tmp_path / "tb", checkpointing=saving)
    assert not (run_folder(tmp_path / "tb", config) / "hparams").exists()
    monkeypatch.setattr(learner, "observe", original)
    resumed = logged_train(tmp_path / "tb", checkpointing=saving)

    expected, found = read_events(clean), read_events(resumed)
    assert found.Tags()["scalars"] == expected.Tags()["scalars"]
    for tag in expected.Tags()["scalars"]:
        if tag != "train/loss":
            assert scalars(found, tag) == scalars(expected, tag), tag
    # step 18 was logged by both attempts and is kept once; after the resume from step 15
    # its mean loss is over steps 16-18 only (uninterrupted: 13-18)
    loss, loss_expected = scalars(found, "train/loss"), scalars(expected, "train/loss")
    assert [step for step, _ in loss] == [step for step, _ in loss_expected]
    assert [pair for pair in loss if pair[0] != 18] == \
        [pair for pair in loss_expected if pair[0] != 18]
    assert scalars(read_events(resumed / "hparams"), "class_il") == \
        scalars(read_events(clean / "hparams"), "class_il")


def test_the_same_configuration_run_again_replaces_its_logs(tiny, tmp_path):
    config = resolve(model="er", buffer_size=20)
    for _ in range(2):
        logger = TensorBoardLogger(tmp_path, config)
        logger.finish(train(config, tiny, progress=False, observer=logger))
    (folder,) = run_folders(tmp_path)
    assert len(list(folder.glob("events.out.tfevents.*"))) == 2  # one file per run
    curves, session = read_events(folder), read_events(folder / "hparams")
    assert [step for step, _ in scalars(curves, "train/loss")] == [6, 12, 18, 24, 30]
    assert len(curves.Images("accuracy_matrix")) == 1
    assert len(scalars(session, "class_il")) == 1


def test_without_matplotlib_the_image_is_left_out_and_nothing_else(mnist_like_root, tmp_path,
                                                                    monkeypatch):
    uninstall("matplotlib", monkeypatch)
    api.run(model="er", buffer_size=20, n_epochs=1, data_root=mnist_like_root, progress=False,
            tensorboard=tmp_path / "tb")
    (folder,) = run_folders(tmp_path / "tb")
    curves = read_events(folder)
    assert curves.Tags()["images"] == []
    assert len(scalars(curves, "class_il/task_1")) == 5


@pytest.mark.parametrize("command", ["run", "sweep"])
def test_a_missing_tensorboard_package_is_one_line_exit_2_before_anything(
        command, mnist_like_root, tmp_path, capsys, monkeypatch):
    uninstall("tensorboard", monkeypatch)
    tensorboard, out, db = tmp_path / "tb", tmp_path / "out", tmp_path / "r.db"
    if command == "run":
        argv = ["run", "--model", "er", "--data-root", str(mnist_like_root), "--out", str(out)]
    else:
        (tmp_path / "s.yaml").write_text("model: er\nseed: [0, 1]\n")
        argv = ["sweep", str(tmp_path / "s.yaml"), "--db", str(db), "--data-root",
                str(mnist_like_root)]
    code = cli.main([*argv, "--tensorboard", str(tensorboard), "--no-progress"])
    stderr = capsys.readouterr().err
    assert code == 2
    assert stderr == ("replaymask: error: --tensorboard needs the tensorboard package: "
                      "pip install 'replaymask[tensorboard]'\n")
    assert not tensorboard.exists() and not out.exists() and not db.exists()


def test_the_python_api_raises_the_same_one_line_error(tmp_path, monkeypatch):
    uninstall("tensorboard", monkeypatch)
    with pytest.raises(ConfigError, match=r"pip install 'replaymask\[tensorboard\]'"):
        api.run(model="er", tensorboard=tmp_path / "tb")
    with pytest.raises(ConfigError, match="needs the tensorboard package"):
        api.sweep({"model": "er"}, db=tmp_path / "r.db", tensorboard=tmp_path / "tb")
    assert not (tmp_path / "r.db").exists()


@pytest.mark.parametrize("command", ["run", "sweep"])
@pytest.mark.parametrize("where, message", [
    ("a-file/tb", "cannot be created: {a_file!r} is not a writable directory"),
    ("a-file", "--tensorboard {a_file!r} exists and is not a directory"),
])
def test_an_unusable_tensorboard_folder_is_one_line_exit_2_before_anything(
        command, where, message, mnist_like_root, tmp_path, capsys):
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    out, db = tmp_path / "out", tmp_path / "r.db"
    if command == "run":
        argv = ["run", "--model", "er", "--data-root", str(mnist_like_root), "--out", str(out)]
    else:
        (tmp_path / "s.yaml").write_text("model: er\n")
        argv = ["sweep", str(tmp_path / "s.yaml"), "--db", str(db)]
    code = cli.main([*argv, "--tensorboard", str(tmp_path / where), "--no-progress"])
    stderr = capsys.readouterr().err
    assert code == 2 and stderr.count("\n") == 1 and stderr.startswith("replaymask: error:")
    assert message.format(a_file=str(a_file)) in stderr
    assert not out.exists() and not db.exists()
