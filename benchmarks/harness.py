"""Shared helpers of the benchmark scenarios: projects, environments, measured processes, tables.

Every contender runs as its own process. `run_measured` reports for each
process its wall time and two memory figures:
- `max_rss_mb`: "Maximum resident set size" from GNU time (`/usr/bin/time -f %M`,
  the figure `time -v` prints), the kernel's high-water mark of the largest single
  process in the tree;
- `tree_peak_mb`: the largest sum of VmRSS over the process and all its
  descendants, polled from /proc every 0.1 s, so it can miss short peaks.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from synthetic_project import FAIL_ENV_VAR, generate_project

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
BIN = Path(sys.executable).parent
PYTHON = Path(sys.executable)
DBT = BIN / "dbt"
DAGSTER = BIN / "dagster"
GNU_TIME = Path("/usr/bin/time")
POLL_SECONDS = 0.1
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")

# The copy of dbt_rerun_dagster that plugin contenders import instead of the working
# tree, set by snapshot_package.
_package_snapshot: Path | None = None

# Variables that would point a contender at another project, profile or instance.
_CLEARED_VARIABLES = ("DBT_PROFILES_DIR", "DBT_TARGET_PATH", "DBT_LOG_PATH", "DAGSTER_HOME", FAIL_ENV_VAR)


class ContenderFailed(RuntimeError):
    """A measured process exited with an unexpected code."""


@dataclass
class Measured:
    """Outcome of one measured process."""

    argv: list[str]
    seconds: float
    returncode: int
    max_rss_mb: float | None
    tree_peak_mb: float
    stdout: str

    def last_json_line(self) -> dict:
        """Return the last standard output line parsed as JSON (see dagster_runs.py)."""
        lines = [line for line in self.stdout.splitlines() if line.strip()]
        if not lines:
            raise ContenderFailed(f"{self.argv} printed nothing on standard output")

        return json.loads(lines[-1])


@dataclass
class Timings:
    """Samples of each contender, in the order they were taken."""

    samples: dict[str, list[float]] = field(default_factory=dict)

    def add(self, contender: str, value: float) -> None:
        self.samples.setdefault(contender, []).append(value)

    def median(self, contender: str) -> float:
        return statistics.median(self.samples[contender])


def bench_env(
    project: Path,
    *,
    dagster_home: Path | None = None,
    fail_models: Sequence[str] = (),
    plugin: bool = False,
) -> dict[str, str]:
    """Return the environment of a contender process working on `project`.

    A Dagster process (`dagster_home` given) gets benchmarks/ on PYTHONPATH for
    the code location modules. Only a process that runs the plugin (`plugin`)
    gets the package copy of `snapshot_package`. The reason is dbt's plugin
    discovery (dbt/plugins/manager.py, dbt-core 1.11): it imports every
    top-level module named `dbt_*` that `pkgutil.iter_modules()` finds, so a
    dbt process with the copy on its path would import dbt_rerun_dagster and Dagster.
    """
    env = {key: value for key, value in os.environ.items() if key not in _CLEARED_VARIABLES}
    env.update(
        {
            "BENCH_PROJECT_DIR": str(project),
            "DBT_DUCKDB_PATH": str(project / "warehouse.duckdb"),
            "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
            "DO_NOT_TRACK": "1",
            # As in an activated virtual environment: dagster-dbt looks `dbt` up on PATH.
            "PATH": os.pathsep.join([str(BIN), os.environ.get("PATH", "")]),
        }
    )
    if dagster_home is not None:
        env["DAGSTER_HOME"] = str(dagster_home)
        python_path = [str(BENCH_DIR), *filter(None, [os.environ.get("PYTHONPATH")])]
        if plugin and _package_snapshot is not None:
            python_path.insert(0, str(_package_snapshot))
        env["PYTHONPATH"] = os.pathsep.join(python_path)
    if fail_models:
        env[FAIL_ENV_VAR] = ",".join(fail_models)

    return env


def snapshot_package(workroot: Path) -> str:
    """Copy dbt_rerun_dagster and make every later contender import the copy.

    The package may change while a long benchmark runs, so the copy keeps one
    version for the whole run. A directory on PYTHONPATH comes before the
    editable install's import hook. Returns a description of the copied
    version: the git commit, whether the package differed from it, and a
    hash of the copied files.

    Raises:
        SyntaxError: a module of the package does not compile; retry once the
            edit is finished.
    """
    global _package_snapshot
    source = REPO_ROOT / "dbt_rerun_dagster"
    destination = workroot / "package_snapshot"
    shutil.rmtree(destination, ignore_errors=True)
    shutil.copytree(source, destination / "dbt_rerun_dagster", ignore=shutil.ignore_patterns("__pycache__"))
    digest = hashlib.sha256()
    for path in sorted((destination / "dbt_rerun_dagster").rglob("*.py")):
        text = path.read_bytes()
        compile(text, str(path), "exec")
        digest.update(path.name.encode() + text)
    _package_snapshot = destination

    commit = _git("rev-parse", "--short", "HEAD")
    changed = _git("status", "--porcelain", "--", "dbt_rerun_dagster")

    return (
        f"commit {commit}, {'with uncommitted changes' if changed else 'clean'}, "
        f"sha256 of the package files {digest.hexdigest()[:12]}"
    )


def _git(*args: str) -> str:
    """Run a read-only git command in the repository and return its output, or '?'."""
    try:
        completed = subprocess.run(
            ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, check=True, timeout=30
        )
    except (OSError, subprocess.SubprocessError):
        return "?"

    return completed.stdout.strip()


def new_dagster_home(path: Path) -> Path:
    """Create an empty Dagster instance directory (SQLite storage, no telemetry)."""
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    (path / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")

    return path


def pristine_project(workroot: Path, model_count: int) -> Path:
    """Generate the N-model project once per work directory and return it."""
    path = workroot / "projects" / f"n{model_count}"
    if not (path / "dbt_project.yml").is_file():
        generate_project(path, model_count)

    return path


def copy_tree(source: Path, destination: Path) -> Path:
    """Replace `destination` with a copy of `source`, keeping every file."""
    shutil.rmtree(destination, ignore_errors=True)
    destination.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(source, destination)

    return destination


def fresh_project(pristine: Path, destination: Path) -> Path:
    """Copy a generated project without dbt artifacts, logs or database."""
    shutil.rmtree(destination, ignore_errors=True)
    shutil.copytree(
        pristine,
        destination,
        ignore=shutil.ignore_patterns("target", "logs", "*.duckdb", "*.duckdb.wal"),
    )

    return destination


def _children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as handle:
                found.extend(int(child) for child in handle.read().split())
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass

    return found


def _tree_rss_bytes(root: int) -> int:
    total = 0
    pending = [root]
    while pending:
        pid = pending.pop()
        try:
            with open(f"/proc/{pid}/statm") as handle:
                total += int(handle.read().split()[1]) * PAGE_SIZE
        except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
            continue
        pending.extend(_children(pid))

    return total


def run_measured(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    log_path: Path,
    expected_returncodes: Iterable[int] = (0,),
) -> Measured:
    """Run `argv` (never through a shell) and measure wall time and memory.

    Standard error goes to `log_path`, standard output to `log_path` with the
    suffix .stdout.

    Raises:
        ContenderFailed: the exit code is not in `expected_returncodes`.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    rss_path = log_path.with_suffix(".maxrss")
    stdout_path = log_path.with_suffix(".stdout")
    command = [str(GNU_TIME), "-f", "%M", "-o", str(rss_path), *map(str, argv)]
    peak = 0
    with open(stdout_path, "w") as stdout, open(log_path, "w") as stderr:
        started = time.perf_counter()
        process = subprocess.Popen(command, cwd=cwd, env=dict(env), stdout=stdout, stderr=stderr)
        finished = threading.Event()

        def poll() -> None:
            nonlocal peak
            while not finished.is_set():
                peak = max(peak, _tree_rss_bytes(process.pid))
                finished.wait(POLL_SECONDS)

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        returncode = process.wait()
        seconds = time.perf_counter() - started
        finished.set()
        poller.join()

    max_rss_mb = None
    try:
        max_rss_mb = int(rss_path.read_text().split()[-1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    stdout_text = stdout_path.read_text()
    if returncode not in tuple(expected_returncodes):
        tail = "\n".join(log_path.read_text().splitlines()[-15:] + stdout_text.splitlines()[-15:])
        raise ContenderFailed(
            f"{list(map(str, argv))} in {cwd} exited with code {returncode}, "
            f"expected {tuple(expected_returncodes)}. Logs are in {log_path}*:\n{tail}"
        )

    return Measured(
        argv=list(map(str, argv)),
        seconds=seconds,
        returncode=returncode,
        max_rss_mb=max_rss_mb,
        tree_peak_mb=peak / 2**20,
        stdout=stdout_text,
    )


def dbt_argv(*args: str) -> list[str]:
    return [str(DBT), *args, "--no-use-colors"]


def rotated(contenders: Sequence[str], round_index: int) -> list[str]:
    """Return the contenders in the order of one round; the first one rotates each round."""
    shift = round_index % len(contenders)

    return [*contenders[shift:], *contenders[:shift]]


# Run results.


@dataclass(frozen=True)
class NodeSet:
    """The nodes one or more dbt invocations reported in run_results.json."""

    statuses: dict[str, str]

    @classmethod
    def from_files(cls, paths: Iterable[Path]) -> NodeSet:
        statuses: dict[str, str] = {}
        for path in paths:
            for result in json.loads(path.read_text())["results"]:
                statuses[result["unique_id"]] = result["status"]

        return cls(statuses)

    @property
    def ids(self) -> set[str]:
        return set(self.statuses)

    def with_status(self, *statuses: str) -> set[str]:
        return {node for node, status in self.statuses.items() if status in statuses}

    def executed(self) -> set[str]:
        """Return the nodes that dbt ran, that is every node it did not skip."""
        return {node for node, status in self.statuses.items() if status != "skipped"}

    def by_type(self, nodes: Iterable[str] | None = None) -> str:
        """Describe a node count by resource type, such as '21 (20 model, 1 test)'."""
        chosen = list(self.executed() if nodes is None else nodes)
        counts = Counter(node.split(".", 1)[0] for node in chosen)
        detail = ", ".join(f"{count} {kind}" for kind, count in sorted(counts.items()))

        return f"{len(chosen)} ({detail})" if chosen else "0"


def plugin_run_results(dagster_home: Path, job_name: str, run_id: str) -> list[Path]:
    """Return the run_results.json files the plugin wrote for one run, in step order."""
    run_dir = dagster_home / "dbt_rerun_artifacts" / job_name / run_id

    return sorted(run_dir.glob("*/attempt-*/run_results.json"))


def dagster_dbt_run_results(project: Path, run_id: str) -> list[Path]:
    """Return the run_results.json files dagster-dbt wrote for one run."""
    return sorted((project / "target").glob(f"*-{run_id[:7]}-*/run_results.json"))


# Output.


def fmt_seconds(values: Sequence[float]) -> str:
    return f"{statistics.median(values):.2f}"


def fmt_ratio(numerator: float, denominator: float) -> str:
    return f"{numerator / denominator:.2f}x"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines.extend("| " + " | ".join(str(cell) for cell in row) + " |" for row in rows)

    return "\n".join(lines)


def log(message: str) -> None:
    print(message, flush=True)
