"""Where each dbt invocation writes its artifacts, and the record kept beside them.

Layout below the artifact root::

    <root>/<job>/<run id>/<step op name>/attempt-<n>/   one per invocation
    <root>/<job>/partial_parse/partial_parse.msgpack   shared parse cache

An invocation directory is created fresh and never reused, so a stale
`run_results.json` from an earlier invocation cannot be mistaken for a new one.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Final

RECORD_FILE: Final = "dbt_rerun_invocation.json"
PARTIAL_PARSE_FILE: Final = "partial_parse.msgpack"
_ATTEMPT_PREFIX: Final = "attempt-"


@dataclass(frozen=True)
class InvocationRecord:
    """What the plugin ran in one artifact directory, written beside dbt's artifacts."""

    run_id: str
    step: str
    attempt: int
    step_command: str
    dbt_args: tuple[str, ...]
    mode: str
    reason: str
    started_at: str
    invocation_id: str | None = None
    exit_code: int | None = None
    finished_at: str | None = None

    def finished(self, *, exit_code: int, invocation_id: str | None) -> InvocationRecord:
        return dataclasses.replace(
            self, exit_code=exit_code, invocation_id=invocation_id, finished_at=utc_now()
        )


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat()


@dataclass(frozen=True)
class ArtifactStore:
    """Artifact directories of one job below `root`."""

    root: Path
    job_name: str

    def step_dir(self, run_id: str, step: str) -> Path:
        return self.root / self.job_name / run_id / step

    def new_invocation_dir(self, run_id: str, step: str, attempt: int) -> Path:
        """Create the directory for a new invocation of a step.

        The directory name carries the attempt number. If it already exists
        (the run worker restarted and resumed the same run), a unique suffix
        keeps the earlier artifacts intact.
        """
        step_dir = self.step_dir(run_id, step)
        step_dir.mkdir(parents=True, exist_ok=True)
        path = step_dir / f"{_ATTEMPT_PREFIX}{attempt}"
        try:
            path.mkdir()
        except FileExistsError:
            path = step_dir / f"{_ATTEMPT_PREFIX}{attempt}-{uuid.uuid4().hex[:8]}"
            path.mkdir()

        return path

    def latest_invocation_dir(self, run_id: str, step: str) -> Path | None:
        """Return the most recent invocation directory of a step in a run, if any."""
        step_dir = self.step_dir(run_id, step)
        if not step_dir.is_dir():
            return None
        candidates = [
            path
            for path in step_dir.iterdir()
            if path.is_dir() and path.name.startswith(_ATTEMPT_PREFIX)
        ]
        if not candidates:
            return None

        return max(candidates, key=_invocation_order)

    @property
    def partial_parse_cache(self) -> Path:
        return self.root / self.job_name / "partial_parse" / PARTIAL_PARSE_FILE

    def seed_partial_parse(self, invocation_dir: Path) -> None:
        """Copy the newest parse cache into a new target directory.

        dbt reads `partial_parse.msgpack` from `--target-path`, so without the
        copy every invocation in a fresh directory would parse the project from
        scratch (about 1 s more on a 200-model project, dbt-core 1.11).
        """
        if self.partial_parse_cache.is_file():
            shutil.copy2(self.partial_parse_cache, invocation_dir / PARTIAL_PARSE_FILE)

    def save_partial_parse(self, invocation_dir: Path) -> None:
        """Publish an invocation's parse cache for the next one, atomically."""
        produced = invocation_dir / PARTIAL_PARSE_FILE
        if not produced.is_file():
            return
        cache = self.partial_parse_cache
        cache.parent.mkdir(parents=True, exist_ok=True)
        staging = cache.with_name(f".{cache.name}.{uuid.uuid4().hex}")
        shutil.copy2(produced, staging)
        os.replace(staging, cache)


def _invocation_order(path: Path) -> tuple[int, float]:
    attempt_text = path.name[len(_ATTEMPT_PREFIX) :].split("-", 1)[0]
    attempt = int(attempt_text) if attempt_text.isdigit() else -1

    return attempt, path.stat().st_mtime


def write_record(invocation_dir: Path, record: InvocationRecord) -> None:
    path = invocation_dir / RECORD_FILE
    staging = path.with_name(f".{path.name}.tmp")
    payload: dict[str, Any] = dataclasses.asdict(record)
    staging.write_text(json.dumps(payload, indent=2), encoding="utf-8")
    os.replace(staging, path)


def read_record(invocation_dir: Path) -> InvocationRecord | None:
    """Return the invocation record of a directory, or None if it is missing or unreadable."""
    try:
        payload = json.loads((invocation_dir / RECORD_FILE).read_text(encoding="utf-8"))
        payload["dbt_args"] = tuple(payload["dbt_args"])
        return InvocationRecord(**payload)
    except (OSError, ValueError, TypeError, KeyError):
        return None
