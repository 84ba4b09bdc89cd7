"""Asset events for the dbt nodes a step ran, so the catalog shows the dbt project.

The job is op-based, so Dagster has no dbt asset definitions up front. Each step
reports the models, seeds and snapshots it built as asset materializations,
and each data test as an asset check evaluation on the node it tests, with
asset keys from dagster-dbt's translator. Only nodes that ran in this
invocation are reported, so a `dbt retry` materializes only what it rebuilt.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator

from dbt_rerun_dagster.dbt.results import NodeResult, RunResults

logger = logging.getLogger(__name__)

MANIFEST_FILE = "manifest.json"
# Resource types that dbt builds into a relation of the warehouse.
BUILT_RESOURCE_TYPES = frozenset({"model", "seed", "snapshot"})
# Statuses of built nodes that changed the relation.
BUILT_STATUSES = frozenset({"success"})


def asset_events(
    results: RunResults, target_dir: Path, translator: DagsterDbtTranslator
) -> Iterator[dg.AssetMaterialization | dg.AssetCheckEvaluation]:
    """Yield one event per built node and per data test of an invocation."""
    relevant = [node for node in results.nodes if _is_reported(node)]
    if not relevant:
        return
    manifest_nodes = _manifest_nodes(target_dir / MANIFEST_FILE)
    if manifest_nodes is None:
        return

    for node in relevant:
        props = manifest_nodes.get(node.unique_id)
        if props is None:
            continue
        if node.resource_type == "test":
            event = _check_evaluation(node, props, manifest_nodes, translator)
            if event is not None:
                yield event
        else:
            yield dg.AssetMaterialization(
                asset_key=translator.get_asset_key(props),
                description=f"dbt {node.resource_type} {node.unique_id}",
                metadata={
                    "unique_id": dg.MetadataValue.text(node.unique_id),
                    "execution time (s)": dg.MetadataValue.float(round(node.execution_time, 3)),
                },
            )


def _is_reported(node: NodeResult) -> bool:
    if node.resource_type == "test":
        return node.status in {"pass", "fail", "warn", "error"}

    return node.resource_type in BUILT_RESOURCE_TYPES and node.status in BUILT_STATUSES


def _manifest_nodes(path: Path) -> dict[str, Any] | None:
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        logger.warning("No readable %s; asset events are not reported", path, exc_info=True)
        return None

    return dict(manifest.get("nodes") or {})


def _check_evaluation(
    node: NodeResult,
    props: dict[str, Any],
    manifest_nodes: dict[str, Any],
    translator: DagsterDbtTranslator,
) -> dg.AssetCheckEvaluation | None:
    tested_id = props.get("attached_node") or next(
        (
            parent
            for parent in (props.get("depends_on") or {}).get("nodes") or []
            if parent.split(".", 1)[0] in BUILT_RESOURCE_TYPES
        ),
        None,
    )
    tested = manifest_nodes.get(tested_id) if tested_id else None
    if tested is None:
        return None
    severity_config = str((props.get("config") or {}).get("severity", "error")).lower()
    warn = node.status == "warn" or severity_config == "warn"

    return dg.AssetCheckEvaluation(
        asset_key=translator.get_asset_key(tested),
        check_name=props.get("name", node.name),
        passed=node.status == "pass",
        severity=dg.AssetCheckSeverity.WARN if warn else dg.AssetCheckSeverity.ERROR,
        metadata={
            "unique_id": dg.MetadataValue.text(node.unique_id),
            "status": dg.MetadataValue.text(node.status),
            "message": dg.MetadataValue.text(node.message or ""),
        },
    )
