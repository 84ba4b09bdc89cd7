"""Where each dbt invocation writes its artifacts, and the record kept beside them.

Layout below the artifact root::

    <root>/<job>/<run id>/<step op name>/attempt-<n>/   one per invocation
    <root>/<job>/partial_parse/partial_parse.msgpack   shared parse cache

An invocation directory is created fresh and never reused, so a stale
`run_results.json` from an earlier invocation cannot be mistaken for a new one.

The root is a local directory or an fsspec URL (`s3://...`, `gs://...`,
`file://...`, `memory://...`) for deployments whose runs execute on different
machines. dbt can only write to a local directory, so with a URL each
invocation writes to a local scratch directory and uploads its artifacts when
it ends. A rerun downloads the parent's `run_results.json` and invocation
record, which is all `dbt retry` needs.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Final

from upath import UPath

logger = logging.getLogger(__name__)

RECORD_FILE: Final = "dbt_rerun_invocation.json"
PARTIAL_PARSE_FILE: Final = "partial_parse.msgpack"
_ATTEMPT_PREFIX: Final = "attempt-"


@dataclass(frozen=True)
class InvocationRecord:
    """Record of the invocation that wrote an artifact directory, kept beside dbt's artifacts."""

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

    def location_of(self, invocation_dir: Path) -> str:
        """Return where the artifacts of an invocation are kept, for users to find them."""
        return str(invocation_dir)

    def publish(self, invocation_dir: Path) -> None:
        """Make an invocation's artifacts available to later reruns (nothing to do locally)."""

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


# Files uploaded to remote storage: what a retry needs (run_results.json and
# the record), what a person debugging a run reads (logs, manifest), and the
# other artifacts of steps that produce them. Compiled SQL stays local.
PUBLISHED_FILES: Final = (
    RECORD_FILE,
    "run_results.json",
    "manifest.json",
    "dbt.log",
    "sources.json",
    "catalog.json",
)
_RETRY_FILES: Final = (RECORD_FILE, "run_results.json")


@dataclass(frozen=True)
class RemoteArtifactStore(ArtifactStore):
    """Artifact directories on fsspec storage, with local scratch directories for dbt.

    `root` is where invocations run (the local scratch root); `remote_root` is
    the URL where their artifacts are kept.
    """

    remote_root: UPath = field(default_factory=lambda: UPath("memory://dbt_rerun"))

    def remote_dir(self, run_id: str, step: str, name: str) -> UPath:
        return self.remote_root / self.job_name / run_id / step / name

    def location_of(self, invocation_dir: Path) -> str:
        return str(self._remote_dir_of(invocation_dir))

    def new_invocation_dir(self, run_id: str, step: str, attempt: int) -> Path:
        local = super().new_invocation_dir(run_id, step, attempt)
        if self._remote_dir_of(local).exists():
            # The scratch directory is new but the remote one exists: a run
            # worker on another machine used the name, so take a unique one.
            unique = local.with_name(f"{local.name}-{uuid.uuid4().hex[:8]}")
            local.rename(unique)
            return unique

        return local

    def publish(self, invocation_dir: Path) -> None:
        destination = self._remote_dir_of(invocation_dir)
        destination.mkdir(parents=True, exist_ok=True)
        for name in PUBLISHED_FILES:
            source = invocation_dir / name
            if source.is_file():
                (destination / name).write_bytes(source.read_bytes())

    def latest_invocation_dir(self, run_id: str, step: str) -> Path | None:
        """Download the latest invocation's retry files into a fresh local directory."""
        step_dir = self.remote_root / self.job_name / run_id / step
        try:
            candidates = [
                path
                for path in step_dir.iterdir()
                if path.name.startswith(_ATTEMPT_PREFIX) and path.is_dir()
            ]
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError:
            logger.warning("Artifacts under %s cannot be listed", step_dir, exc_info=True)
            return None
        if not candidates:
            return None
        latest = max(candidates, key=lambda path: _attempt_number(path.name))

        return self._download(latest)

    def _download(self, remote: UPath) -> Path | None:
        local = self.root / "_downloads" / uuid.uuid4().hex
        local.mkdir(parents=True)
        for name in _RETRY_FILES:
            source = remote / name
            try:
                (local / name).write_bytes(source.read_bytes())
            except FileNotFoundError:
                continue
            except OSError:
                logger.warning("Artifact %s cannot be read", source, exc_info=True)

        return local

    def _remote_dir_of(self, invocation_dir: Path) -> UPath:
        relative = invocation_dir.relative_to(self.root / self.job_name)
        run_id, step, name = relative.parts

        return self.remote_dir(run_id, step, name)


def _attempt_number(name: str) -> tuple[int, str]:
    attempt_text = name[len(_ATTEMPT_PREFIX) :].split("-", 1)[0]
    return (int(attempt_text) if attempt_text.isdigit() else -1, name)


def is_remote_location(location: str | os.PathLike[str]) -> bool:
    """Return whether an artifact root is an fsspec URL rather than a local path."""
    return isinstance(location, str) and "://" in location
