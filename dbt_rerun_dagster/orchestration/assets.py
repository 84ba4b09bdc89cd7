"""Asset events for the dbt nodes a step ran, so the catalog shows the dbt project.

The job is op-based, so Dagster has no dbt asset definitions up front. Each step
reports the models, seeds and snapshots it built as asset materializations,
and each data test as an asset check evaluation on the node it tests, with
asset keys from dagster-dbt's translator. Only nodes that ran in this
invocation are reported, so a `dbt retry` materializes only what it rebuilt.

A `NodeEvent` is the plain, JSON-serialisable form of one such event. The
step builds them while dbt runs and hands them to the asset event writer
process (`event_writer.py`); whatever that process did not write, the step
yields itself after dbt has finished. Both paths turn a `NodeEvent` into the
same Dagster event with `NodeEvent.to_dagster`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Collection, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dagster as dg

from dbt_rerun_dagster.dbt.results import RunResults

if TYPE_CHECKING:
    from dagster_dbt import DagsterDbtTranslator

logger = logging.getLogger(__name__)

MANIFEST_FILE = "manifest.json"
# Resource types that dbt builds into a relation of the warehouse.
BUILT_RESOURCE_TYPES = frozenset({"model", "seed", "snapshot"})
# Statuses of built nodes that changed the relation.
BUILT_STATUSES = frozenset({"success"})
# dbt subcommands whose nodes change relations or evaluate tests. `compile`,
# `docs generate` and `show` also report models as "success" without building
# them, so their nodes get no events. A `dbt retry` step counts as its command.
REPORTING_SUBCOMMANDS = frozenset({"build", "run", "seed", "snapshot", "test"})
# Statuses of data tests that evaluated their check.
EVALUATED_TEST_STATUSES = frozenset({"pass", "fail", "warn", "error"})

MATERIALIZATION = "materialization"
CHECK = "check"


@dataclass(frozen=True)
class NodeEvent:
    """One asset event of a dbt node, before it becomes a Dagster event."""

    unique_id: str
    kind: str  # MATERIALIZATION or CHECK
    asset_key: tuple[str, ...]
    resource_type: str
    status: str
    execution_time: float
    message: str = ""
    check_name: str = ""
    warn: bool = False

    def to_dagster(self) -> dg.AssetMaterialization | dg.AssetCheckEvaluation:
        key = dg.AssetKey(list(self.asset_key))
        if self.kind == CHECK:
            return dg.AssetCheckEvaluation(
                asset_key=key,
                check_name=self.check_name,
                passed=self.status == "pass",
                severity=dg.AssetCheckSeverity.WARN if self.warn else dg.AssetCheckSeverity.ERROR,
                metadata={
                    "unique_id": dg.MetadataValue.text(self.unique_id),
                    "status": dg.MetadataValue.text(self.status),
                    "message": dg.MetadataValue.text(self.message),
                },
            )

        return dg.AssetMaterialization(
            asset_key=key,
            description=f"dbt {self.resource_type} {self.unique_id}",
            metadata={
                "unique_id": dg.MetadataValue.text(self.unique_id),
                "execution time (s)": dg.MetadataValue.float(round(self.execution_time, 3)),
            },
        )

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> NodeEvent:
        return cls(**{**data, "asset_key": tuple(data["asset_key"])})


def is_reported(resource_type: str, status: str) -> bool:
    """Return whether a node that finished with `status` gets an asset event."""
    if resource_type == "test":
        return status in EVALUATED_TEST_STATUSES

    return resource_type in BUILT_RESOURCE_TYPES and status in BUILT_STATUSES


def node_event(
    unique_id: str,
    status: str,
    execution_time: float,
    message: str | None,
    manifest_nodes: Mapping[str, Any],
    translator: DagsterDbtTranslator,
) -> NodeEvent | None:
    """Build the asset event of one finished node, or None if it gets none."""
    resource_type = unique_id.split(".", 1)[0]
    if not is_reported(resource_type, status):
        return None
    props = manifest_nodes.get(unique_id)
    if props is None:
        return None
    common = {
        "unique_id": unique_id,
        "resource_type": resource_type,
        "status": status,
        "execution_time": float(execution_time or 0.0),
        "message": message or "",
    }
    if resource_type != "test":
        return NodeEvent(
            kind=MATERIALIZATION, asset_key=tuple(translator.get_asset_key(props).path), **common
        )

    tested = _tested_node(props, manifest_nodes)
    if tested is None:
        return None
    severity_config = str((props.get("config") or {}).get("severity", "error")).lower()

    return NodeEvent(
        kind=CHECK,
        asset_key=tuple(translator.get_asset_key(tested).path),
        check_name=props.get("name") or unique_id.rsplit(".", 1)[-1],
        warn=status == "warn" or severity_config == "warn",
        **common,
    )


def node_events(
    results: RunResults,
    target_dir: Path,
    get_translator: Callable[[], DagsterDbtTranslator],
    skip: Collection[str] = frozenset(),
) -> list[NodeEvent]:
    """Build the asset events of the reported nodes of an invocation, except those in `skip`.

    `get_translator` is called only if some node needs an event, so that a step
    whose events the writer process wrote never imports dagster-dbt.
    """
    nodes = [
        node
        for node in results.nodes
        if node.unique_id not in skip and is_reported(node.resource_type, node.status)
    ]
    if not nodes:
        return []
    manifest_nodes = read_manifest_nodes(target_dir)
    if manifest_nodes is None:
        return []
    translator = get_translator()

    events = (
        node_event(
            node.unique_id,
            node.status,
            node.execution_time,
            node.message,
            manifest_nodes,
            translator,
        )
        for node in nodes
    )

    return [event for event in events if event is not None]


def read_manifest_nodes(target_dir: Path, *, warn: bool = True) -> dict[str, Any] | None:
    """Return the `nodes` of the manifest.json that dbt wrote to `target_dir`, or None."""
    path = target_dir / MANIFEST_FILE
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        if warn:
            logger.warning("No readable %s; asset events are not reported", path, exc_info=True)
        return None

    return dict(manifest.get("nodes") or {})


def _tested_node(props: Mapping[str, Any], manifest_nodes: Mapping[str, Any]) -> Any:
    tested_id = props.get("attached_node") or next(
        (
            parent
            for parent in (props.get("depends_on") or {}).get("nodes") or []
            if parent.split(".", 1)[0] in BUILT_RESOURCE_TYPES
        ),
        None,
    )

    return manifest_nodes.get(tested_id) if tested_id else None
