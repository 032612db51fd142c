"""Live logs in TensorBoard: ``replaymask run|sweep --tensorboard DIR`` (the ``tensorboard``
extra; the accuracy-matrix image also needs matplotlib).

Every run writes into a folder of its own, named after the run and its configuration's
hash (runs that differ only in, say, the lr do not share one)::

    DIR/<run name>_<hash>/          as it trains: train/loss (the mean of the last 100
                                    steps), class_il/task_J and task_il/task_J (task J's
                                    accuracy after every task), class_il/average,
                                    class_il/forgetting (and task_il/...) over the tasks
                                    seen, analysis/* (with --analysis); at the end, the
                                    accuracy matrices as an image (accuracy_matrix)
    DIR/<run name>_<hash>/hparams/  once it has finished: the run's settings as
                                    hyper-parameters and its final class_il, task_il,
                                    class_il_forgetting, task_il_forgetting, which
                                    TensorBoard's HParams view lists, one row per run

The x axis is the training step everywhere. The hyper-parameters are the scalar values
of the configuration as ``result.json`` stores it; TensorBoard works out from all the
runs under DIR which of them differ and shows those first.
"""

from __future__ import annotations

import math
import struct
import time
from pathlib import Path

from ..core.observer import TrainingObserver
from ..core.results import RunResult
from ..core.run_config import RunConfig
from .logged_values import (
    accuracy_matrix_png,
    analysis_values,
    final_metrics,
    hyperparameters,
    require,
    run_label,
    task_end_values,
)

SESSION_FOLDER = "hparams"
FLUSH_SECS = 10  # live: TensorBoard sees new points within this many seconds


def require_package() -> None:
    """Raise a one-line :class:`~replaymask.errors.ConfigError` unless tensorboard loads."""
    require("--tensorboard", "tensorboard", "tensorboard.summary.writer.event_file_writer",
            "tensorboard.plugins.hparams.plugin_data_pb2")


def run_folder(root: str | Path, config: RunConfig) -> Path:
    """Where a run's event files go under ``root``."""
    return Path(root) / run_label(config)


class TensorBoardLogger(TrainingObserver):
    """Writes one run's event files under ``root`` (see the module's docstring).

    The curves are written as the run trains, from :meth:`begin` on (nothing before); the
    HParams session when it has finished (:meth:`finish` with its result), so that the
    HParams view lists finished runs only, each once, whatever attempts it took.
    """

    def __init__(self, root: str | Path, config: RunConfig):
        self.config = config
        self.folder = run_folder(root, config)
        self._curves = None
        self._last_step = 0

    def begin(self, steps_done: int) -> None:
        from tensorboard.summary.writer.event_file_writer import EventFileWriter

        self._curves = EventFileWriter(str(self.folder), flush_secs=FLUSH_SECS)
        _restart(self._curves, steps_done)
        self._last_step = steps_done

    def loss(self, step: int, task: int, mean_loss: float) -> None:
        self._scalars(self._curves, step, {"train/loss": mean_loss})

    def task_end(self, task: int, step: int, accuracy_matrix: dict[str, list[list[float]]]
                 ) -> None:
        self._scalars(self._curves, step, task_end_values(accuracy_matrix))
        self._curves.flush()

    def analysis(self, record: dict) -> None:
        self._scalars(self._curves, record["step"], analysis_values(record))

    def finish(self, result: RunResult | None) -> None:
        """Close the run's logs. With its ``result``: add the accuracy matrices as an image
        (left out without matplotlib) and the HParams session: the hyper-parameters, the
        final metrics and the status "success". Without (the run failed or stopped): the
        curves so far stay, and the run stays out of the HParams view."""
        if self._curves is None:  # training never began: nothing was written
            return
        from tensorboard.compat.proto.event_pb2 import Event
        from tensorboard.summary.writer.event_file_writer import EventFileWriter

        if result is not None:
            image = accuracy_matrix_png(result.accuracy_matrix, self.config.name)
            if image is not None:
                self._curves.add_event(Event(wall_time=time.time(), step=self._last_step,
                                             summary=_image("accuracy_matrix", image)))
            session = EventFileWriter(str(self.folder / SESSION_FOLDER), flush_secs=FLUSH_SECS)
            _restart(session, 0)  # a run of the same configuration again: its session only
            session.add_event(Event(wall_time=time.time(), step=0,
                                    summary=_session_start(hyperparameters(self.config))))
            self._scalars(session, self._last_step, final_metrics(result))
            session.add_event(Event(wall_time=time.time(), step=self._last_step,
                                    summary=_session_end()))
            session.close()
        self._curves.close()
        self._curves = None

    def _scalars(self, writer, step: int, values: dict[str, float]) -> None:
        from tensorboard.compat.proto.event_pb2 import Event
        from tensorboard.compat.proto.summary_pb2 import Summary

        self._last_step = max(self._last_step, step)
        writer.add_event(Event(wall_time=time.time(), step=step, summary=Summary(value=[
            Summary.Value(tag=tag, simple_value=value) for tag, value in values.items()])))


def _restart(writer, step: int) -> None:
    """Mark that the run (re)starts at ``step``: TensorBoard drops what an earlier attempt
    logged into this folder from that step on (a resumed run re-logs those steps)."""
    from tensorboard.compat.proto.event_pb2 import Event, SessionLog

    writer.add_event(Event(wall_time=time.time(), step=step,
                           session_log=SessionLog(status=SessionLog.START)))


def _hparams_summary(tag: str, plugin_data):
    from tensorboard.compat.proto.summary_pb2 import Summary
    from tensorboard.plugins.hparams import metadata

    return Summary(value=[Summary.Value(tag=tag,
                                        metadata=metadata.create_summary_metadata(plugin_data))])


def _session_start(values: dict[str, bool | int | float | str]):
    from tensorboard.plugins.hparams import metadata, plugin_data_pb2

    start = plugin_data_pb2.SessionStartInfo(start_time_secs=time.time())
    for name, value in values.items():
        if isinstance(value, bool):
            start.hparams[name].bool_value = value
        elif isinstance(value, (int, float)) and math.isfinite(value):
            start.hparams[name].number_value = value
        else:  # a string, or an infinite number (JSON, which TensorBoard serves, has none)
            start.hparams[name].string_value = str(value)
    return _hparams_summary(metadata.SESSION_START_INFO_TAG,
                            plugin_data_pb2.HParamsPluginData(session_start_info=start))


def _session_end():
    from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2

    end = plugin_data_pb2.SessionEndInfo(status=api_pb2.STATUS_SUCCESS,
                                         end_time_secs=time.time())
    return _hparams_summary(metadata.SESSION_END_INFO_TAG,
                            plugin_data_pb2.HParamsPluginData(session_end_info=end))


def _image(tag: str, png: bytes):
    from tensorboard.compat.proto.summary_pb2 import Summary

    width, height = struct.unpack(">II", png[16:24])  # the PNG header's IHDR chunk
    return Summary(value=[Summary.Value(tag=tag, image=Summary.Image(
        height=height, width=width, colorspace=4, encoded_image_string=png))])
