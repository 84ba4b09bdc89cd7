"""A helper process that writes a step's asset events while dbt runs.

Why a process: each asset event costs Dagster about 7 ms of Python work on
its default SQLite storage (benchmarks/bench_event_cost.py). A profile shows
4 connections and 2 commits per event. A step reports one event per model,
seed and data test. Written by the step after dbt finished, 1521 events
added 13.9 s to a 1000-model seed/run/test job (benchmarks/RESULTS.md).
dbt runs in the step's process and keeps one core busy with Python, so a
thread would only take turns with it under the GIL. A second process writes
on the other core while dbt works. Dagster's own multiprocess executor has
several processes writing one run's event log in the same way.

Protocol, one JSON object per line on the writer's stdin:
- first line: `{"instance_ref": <serialized InstanceRef>}`;
- `{"context": ID, "run_id", "job_name", "step_handle", "node_handle",
  "step_kind", "event_tags"}` describes a step (serialized with
  Dagster's serdes);
- `{"seq": N, "context": ID, "timestamp": T, "event": <NodeEvent>}` is
  one event to write;
- `{"seq": N, "context": ID, "timestamp": T, "node": [unique id, status,
  execution time, message]}` is a finished node whose event the writer
  builds itself, from the manifest in the step's target directory, with
  dagster-dbt's default translator. Steps send nodes when the job has no
  custom translator, so that the step's process imports dagster-dbt
  (0.3 s and 45 MB) only when it writes events itself.
The writer responds on stdout with `ok N` (written), `none N` (the node
gets no event) or `err N <reason>`. The step yields itself every event that
got neither `ok` nor `none`, so a writer that cannot start, dies, or sends
no response for 60 s loses no event. At most the event it was writing when
it died can appear twice.

The writer builds Dagster events with Dagster's own factories
(`DagsterEvent.asset_materialization`, `DagsterEvent.asset_check_evaluation`)
on a stand-in for the step context, so messages and validation are the same
as for events the op yields. Those factories and `DagsterEvent`'s fields are
Dagster internals (dagster 1.13), used only in this module.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dbt_rerun_dagster.orchestration.assets import NodeEvent, node_event, read_manifest_nodes

if TYPE_CHECKING:
    import dagster as dg
    from dagster_dbt import DagsterDbtTranslator

logger = logging.getLogger(__name__)

# A writer that sends no response for this long while events are pending is
# considered stuck: the step stops it and writes the rest itself.
STALL_SECONDS = 60.0
# After an interruption (run terminated), wait at most this long for events
# of nodes that dbt had already finished.
INTERRUPTED_FLUSH_SECONDS = 5.0
CLOSE_SECONDS = 10.0
# The writer's responses (any other response is the reason of a failure).
OK = "ok"
NONE = "none"


def step_identity(context: dg.OpExecutionContext) -> dict[str, Any]:
    """Describe the step for the writer, which builds the step's events with it."""
    from dagster._serdes import serialize_value

    step_context = context.get_step_execution_context()
    step = step_context.step

    return {
        "run_id": context.run_id,
        "job_name": step_context.job_name,
        "step_handle": serialize_value(step.handle),
        "node_handle": serialize_value(step.node_handle),
        "step_kind": step.kind.value,
        "event_tags": dict(step_context.event_tags),
    }


class AssetEventWriter:
    """The parent side of one writer process; safe to use from several threads."""

    def __init__(self, instance_ref: str) -> None:
        self._lock = threading.Lock()
        self._responded = threading.Condition()
        self._results: dict[int, str] = {}  # seq -> OK, NONE or the reason it failed
        self._next_seq = 0
        self._next_context = 0
        self._last_response = time.monotonic()
        self._process = subprocess.Popen(
            [sys.executable, "-m", __name__],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=_writer_environment(),
        )
        self._reader = threading.Thread(
            target=self._read_responses, name="asset-event-writer-responses", daemon=True
        )
        self._reader.start()
        # Lines for the writer's stdin. A sender thread writes them, so that no
        # caller blocks on a full pipe when the writer stops reading: the
        # stall check in `wait` then kills it.
        self._outbox: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._closed = False
        self._sender = threading.Thread(
            target=self._write_lines, name="asset-event-writer-sender", daemon=True
        )
        self._sender.start()
        self._send({"instance_ref": instance_ref})

    @property
    def pid(self) -> int:
        return self._process.pid

    def alive(self) -> bool:
        return self._process.poll() is None

    def register_step(self, identity: dict[str, Any]) -> int:
        with self._lock:
            context_id = self._next_context
            self._next_context += 1
        self._send({"context": context_id, **identity})

        return context_id

    def submit(self, context_id: int, event: NodeEvent, timestamp: float) -> int | None:
        """Send one event; return its sequence number, or None if the writer is gone."""
        return self._submit(context_id, timestamp, {"event": event.to_json()})

    def submit_node(
        self, context_id: int, node: tuple[str, str, float, str | None], timestamp: float
    ) -> int | None:
        """Send a finished node for the writer to translate; see the module's docstring."""
        return self._submit(context_id, timestamp, {"node": list(node)})

    def _submit(self, context_id: int, timestamp: float, body: dict[str, Any]) -> int | None:
        with self._lock:
            seq = self._next_seq
            self._next_seq += 1
        sent = self._send({"seq": seq, "context": context_id, "timestamp": timestamp, **body})

        return seq if sent else None

    def wait(self, seqs: Iterable[int], stall_seconds: float = STALL_SECONDS) -> dict[int, str]:
        """Wait until the writer has responded to `seqs`, died or stalled; return its responses.

        A stalled writer is killed first, so it cannot write an event after
        the caller has decided to write it itself. A response is OK, NONE
        or the reason the writer could not write the event.
        """
        pending = set(seqs)
        with self._responded:
            while not pending.issubset(self._results) and self._reader.is_alive():
                if time.monotonic() - self._last_response > stall_seconds:
                    logger.warning(
                        "The asset event writer (pid %d) sent no response for %.0f s; stopping it",
                        self._process.pid,
                        stall_seconds,
                    )
                    self._process.kill()
                    break
                self._responded.wait(timeout=0.5)
        self._reader.join(timeout=0 if self.alive() else CLOSE_SECONDS)
        with self._responded:
            return {seq: self._results[seq] for seq in pending if seq in self._results}

    def close(self, timeout: float | None = CLOSE_SECONDS) -> None:
        """Let the writer finish what it was sent and exit.

        With a `timeout`, wait for it and kill it after that many seconds;
        with None, return at once (it exits by itself).
        """
        with self._lock:
            if not self._closed:
                self._closed = True
                self._outbox.put(None)
        if timeout is None:
            return
        try:
            self._process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._reader.join(timeout=timeout)

    def _send(self, message: dict[str, Any]) -> bool:
        line = (json.dumps(message, separators=(",", ":")) + "\n").encode()
        with self._lock:
            if self._closed or not self._sender.is_alive():
                return False
            self._outbox.put(line)

        return True

    def _write_lines(self) -> None:
        stdin = self._process.stdin
        assert stdin is not None
        try:
            while (line := self._outbox.get()) is not None:
                stdin.write(line)
                if self._outbox.empty():
                    stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            logger.debug("The asset event writer stopped reading", exc_info=True)
        finally:
            try:
                stdin.close()
            except (BrokenPipeError, OSError):
                pass

    def _read_responses(self) -> None:
        assert self._process.stdout is not None
        for raw in self._process.stdout:
            verdict, _, rest = raw.decode(errors="replace").rstrip("\n").partition(" ")
            seq_text, _, reason = rest.partition(" ")
            if not seq_text.isdigit():
                continue
            with self._responded:
                self._results[int(seq_text)] = verdict if verdict in (OK, NONE) else reason
                self._last_response = time.monotonic()
                self._responded.notify_all()
        with self._responded:
            self._responded.notify_all()


def _writer_environment() -> dict[str, str]:
    # The writer imports this package from where this process found it, also
    # when a code location puts it on sys.path instead of installing it.
    # An installed package needs nothing: site-packages on PYTHONPATH would
    # come before the standard library.
    environment = {**os.environ, "PYTHONUNBUFFERED": "1"}
    package_root = Path(__file__).resolve().parents[2]
    if package_root.name not in {"site-packages", "dist-packages"}:
        environment["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(package_root), os.environ.get("PYTHONPATH")])
        )

    return environment


_writers: dict[str, AssetEventWriter] = {}
_dead_writers: set[str] = set()
_writers_lock = threading.Lock()


def writer_for(instance: dg.DagsterInstance) -> AssetEventWriter | None:
    """Return this process's writer for `instance`, starting it if needed.

    None when the instance lives only in this process (an ephemeral instance,
    as in `execute_in_process`), or the writer cannot start or died earlier.
    """
    if instance.is_ephemeral:
        return None
    try:
        from dagster._serdes import serialize_value

        instance_ref = serialize_value(instance.get_ref())
    except Exception:  # noqa: BLE001 - the step then writes its events itself
        logger.warning("Cannot describe the instance to a writer process", exc_info=True)
        return None

    with _writers_lock:
        if instance_ref in _dead_writers:
            return None
        writer = _writers.get(instance_ref)
        if writer is not None and writer.alive():
            return writer
        if writer is not None:
            # Once a writer died, steps of this process write their events themselves.
            logger.warning("The asset event writer (pid %d) exited; not restarting it", writer.pid)
            _dead_writers.add(instance_ref)
            return None
        try:
            writer = AssetEventWriter(instance_ref)
        except OSError:
            logger.warning("Cannot start the asset event writer", exc_info=True)
            return None
        _writers[instance_ref] = writer

        return writer


def close_writers() -> None:
    """Tell every writer of this process to exit once it wrote what it was sent.

    Does not wait: steps have already waited for their events, and waiting
    for the writer's own shutdown (about 0.4 s) would only delay the run.
    """
    with _writers_lock:
        writers = list(_writers.values())
        _writers.clear()
    for writer in writers:
        writer.close(timeout=None)


atexit.register(close_writers)


class AssetEventStream:
    """Feeds one dbt invocation's finished nodes to the writer as dbt reports them.

    `on_dbt_event` is a dbtRunner callback: it runs in dbt's threads and only
    queues the finished node. A feeder thread sends it on: as a finished node
    when `translator` is None (the writer translates it), else as a
    `NodeEvent` built from the manifest that dbt wrote before running any node.
    """

    def __init__(
        self,
        writer: AssetEventWriter,
        identity: dict[str, Any],
        target_dir: Path,
        translator: DagsterDbtTranslator | None,
    ) -> None:
        self._writer = writer
        self._target_dir = target_dir
        self._translator = translator
        self._submitted: dict[str, int] = {}  # unique id -> sequence number
        self._no_event: set[str] = set()  # finished nodes that get no asset event
        self._queue: queue.SimpleQueue[tuple[Any, ...] | None] = queue.SimpleQueue()
        self._context_id = writer.register_step({**identity, "target_dir": str(target_dir)})
        self._feeder = threading.Thread(target=self._feed, name="asset-event-feeder", daemon=True)
        self._feeder.start()

    def on_dbt_event(self, event: Any) -> None:
        try:
            if event.info.name != "NodeFinished":
                return
            result = event.data.run_result
            self._queue.put(
                (
                    event.data.node_info.unique_id,
                    str(result.status),
                    float(result.execution_time or 0.0),
                    result.message,
                    time.time(),
                )
            )
        except Exception:  # noqa: BLE001 - never disturb dbt; the step writes the rest
            logger.debug("Ignoring a dbt event the asset stream cannot read", exc_info=True)

    def finish(self, stall_seconds: float = STALL_SECONDS) -> set[str]:
        """Wait for the writer; return the nodes it handled: written, or needing no event."""
        self._queue.put(None)
        self._feeder.join()
        responses = self._writer.wait(self._submitted.values(), stall_seconds)
        handled = {uid for uid, seq in self._submitted.items() if responses.get(seq) in (OK, NONE)}
        errors = {
            responses[seq]
            for seq in self._submitted.values()
            if responses.get(seq) not in (None, OK, NONE)
        }
        if errors:
            logger.warning("The asset event writer could not write some events: %s", errors)

        return handled | self._no_event

    def _feed(self) -> None:
        manifest_nodes: dict[str, Any] | None = None
        while (item := self._queue.get()) is not None:
            unique_id, status, execution_time, message, timestamp = item
            try:
                if self._translator is None:
                    seq = self._writer.submit_node(
                        self._context_id, (unique_id, status, execution_time, message), timestamp
                    )
                    if seq is not None:
                        self._submitted[unique_id] = seq
                    continue
                if manifest_nodes is None:
                    # Not written yet or unreadable: the step reports this node itself.
                    manifest_nodes = read_manifest_nodes(self._target_dir, warn=False)
                    if manifest_nodes is None:
                        continue
                event = node_event(
                    unique_id, status, execution_time, message, manifest_nodes, self._translator
                )
                if event is None:
                    self._no_event.add(unique_id)
                    continue
                seq = self._writer.submit(self._context_id, event, timestamp)
                if seq is not None:
                    self._submitted[unique_id] = seq
            except Exception:  # noqa: BLE001 - the step writes this event itself
                logger.debug("Cannot stream the event of %s", unique_id, exc_info=True)


# ---------------------------------------------------------------------------
# The writer process.


class _StepStandIn:
    def __init__(self, identity: dict[str, Any]) -> None:
        from dagster._core.execution.plan.step import StepKind
        from dagster._serdes import deserialize_value

        self.handle = deserialize_value(identity["step_handle"])
        self.node_handle = deserialize_value(identity["node_handle"])
        self.kind = StepKind(identity["step_kind"])
        self.key = self.handle.to_key()


class _StepContextStandIn:
    """The parts of a step context that Dagster's step event factories read."""

    def __init__(self, instance: dg.DagsterInstance, identity: dict[str, Any]) -> None:
        self.job_name = identity["job_name"]
        self.run_id = identity["run_id"]
        self.event_tags = identity["event_tags"]
        self.step = _StepStandIn(identity)
        self.log = self
        self.timestamp = 0.0
        self.target_dir = Path(identity.get("target_dir") or ".")
        self._instance = instance
        self._manifest_nodes: dict[str, Any] | None = None
        self._translator: Any = None

    def release_manifest(self) -> None:
        self._manifest_nodes = None

    def translate(self, node: list[Any]) -> NodeEvent | None:
        if self._translator is None:
            from dagster_dbt import DagsterDbtTranslator

            self._translator = DagsterDbtTranslator()
        if self._manifest_nodes is None:
            self._manifest_nodes = read_manifest_nodes(self.target_dir, warn=False)
            if self._manifest_nodes is None:
                # The step reports this node itself, once dbt has finished.
                raise FileNotFoundError(f"no readable manifest.json in {self.target_dir}")
        unique_id, status, execution_time, message = node

        return node_event(
            unique_id, status, execution_time, message, self._manifest_nodes, self._translator
        )

    def log_dagster_event(self, level: int, msg: str, dagster_event: Any, **_: Any) -> None:
        from dagster._core.events.log import EventLogEntry

        self._instance.handle_new_event(
            EventLogEntry(
                error_info=None,
                level=level,
                user_message=msg,
                run_id=self.run_id,
                timestamp=self.timestamp,
                step_key=dagster_event.step_key,
                job_name=self.job_name,
                dagster_event=dagster_event,
            )
        )


def _write(context: _StepContextStandIn, event: NodeEvent, timestamp: float) -> None:
    import dagster as dg
    from dagster._core.events import DagsterEvent

    context.timestamp = timestamp
    dagster_event = event.to_dagster()
    if isinstance(dagster_event, dg.AssetCheckEvaluation):
        DagsterEvent.asset_check_evaluation(context, dagster_event)  # type: ignore[arg-type]
    else:
        DagsterEvent.asset_materialization(context, dagster_event)  # type: ignore[arg-type]


def _main() -> int:
    # Terminating a run interrupts its process group; the writer still writes what
    # it was sent and exits when the step's process closes its stdin.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Responses go to the original stdout; anything else that prints goes to stderr.
    responses = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())

    import dagster as dg
    from dagster._core.instance.ref import InstanceRef
    from dagster._serdes import deserialize_value

    header = sys.stdin.readline()
    if not header:
        return 0
    ref = deserialize_value(json.loads(header)["instance_ref"], InstanceRef)
    with dg.DagsterInstance.from_ref(ref) as instance:
        contexts: dict[int, _StepContextStandIn] = {}
        for line in sys.stdin:
            message = json.loads(line)
            if "seq" not in message:
                context_id = message.pop("context")
                # Steps of a process run one after another: keep one manifest in memory.
                for earlier in contexts.values():
                    earlier.release_manifest()
                try:
                    contexts[context_id] = _StepContextStandIn(instance, message)
                except Exception:  # noqa: BLE001 - its events fail with a KeyError
                    logger.exception("Cannot read the description of step %s", context_id)
                continue
            seq = message["seq"]
            try:
                context = contexts[message["context"]]
                if "node" in message:
                    event = context.translate(message["node"])
                else:
                    event = NodeEvent.from_json(message["event"])
                if event is not None:
                    _write(context, event, message["timestamp"])
            except Exception as error:  # noqa: BLE001 - reported; the step writes it itself
                reason = " ".join(f"{type(error).__name__}: {error}".split())[:500]
                responses.write(f"err {seq} {reason}\n")
            else:
                responses.write(f"{OK if event is not None else NONE} {seq}\n")

    return 0


if __name__ == "__main__":
    sys.exit(_main())
