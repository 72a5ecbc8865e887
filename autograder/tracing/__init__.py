"""Tracing: run pipeline stages and record every forward and backward as it really runs.

* :mod:`.recorder`: the events of one step (stage, kind, micro-batch, times, saved bytes), with
  micro-batches identified by their data;
* :mod:`.executor`: :class:`LocalExecutor`, which runs the stage modules and records them. The
  judge's stage host runs one for the student's remote proxies; the students' tools run one in
  their own process;
* :mod:`.replay`: a traced step replayed on in-order devices, every forward included (activation
  checkpointing's recomputations, forwards thrown away), and the bytes of activations each stage
  holds at its peak.

Student code meets only :class:`autograder.harness.stage.PipelineStage`, the module it calls.
"""

from .executor import LocalExecutor, StageError
from .recorder import UNKNOWN_MB, Recorder, TraceEvent, fingerprint

__all__ = ["UNKNOWN_MB", "LocalExecutor", "Recorder", "StageError", "TraceEvent", "fingerprint"]
