"""Building a Dagster job from an ordered list of dbt commands."""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import dagster as dg
import yaml
from upath import UPath

from dbt_rerun_dagster.artifacts import RemoteArtifactStore, is_remote_location
from dbt_rerun_dagster.compat import check_dbt_version
from dbt_rerun_dagster.dbt.classify import FailureClassifier
from dbt_rerun_dagster.dbt.commands import DbtCommand, parse_step, parse_steps
from dbt_rerun_dagster.errors import DbtJobDefinitionError
from dbt_rerun_dagster.orchestration.executor import with_rerun_marking
from dbt_rerun_dagster.orchestration.retention import ArtifactRetention, prune_artifacts
from dbt_rerun_dagster.orchestration.settings import SETTINGS_RESOURCE_KEY, DbtRunSettings
from dbt_rerun_dagster.orchestration.spec import DbtJobSpec, StepSpec
from dbt_rerun_dagster.orchestration.step import run_step
from dbt_rerun_dagster.tags import (
    DAGSTER_MAX_RETRIES_TAG,
    DAGSTER_RETRY_STRATEGY_TAG,
    RESERVED_RUN_TAGS,
)

# dagster-dbt is imported only where it is used, which saves 0.3 s and 45 MB
# in every run worker (benchmarks/RESULTS.md). A job over a DbtProject or
# with a custom translator comes with it; the default translator runs in the
# asset event writer.
if TYPE_CHECKING:
    from dagster_dbt import DagsterDbtTranslator, DbtProject

logger = logging.getLogger(__name__)

# Job metadata key that marks jobs built by this plugin.
DBT_JOB_METADATA_KEY = "dbt_rerun/project_dir"

_PACKAGE_FILES = ("packages.yml", "dependencies.yml")

# Our strategy names and Dagster's values of the dagster/retry_strategy tag.
_RUN_RETRY_STRATEGIES = {"from_failure": "FROM_FAILURE", "all_steps": "ALL_STEPS"}


def build_dbt_job(
    name: str,
    project_dir: str | os.PathLike[str] | DbtProject,
    steps: Sequence[str],
    *,
    profiles_dir: str | os.PathLike[str] | None = None,
    target: str | None = None,
    artifacts_root: str | os.PathLike[str] | None = None,
    retry_policy: dg.RetryPolicy | None = None,
    executor: dg.ExecutorDefinition | None = None,
    deps: bool | Literal["auto"] = "auto",
    source_freshness: bool = False,
    docs_generate: bool = False,
    description: str | None = None,
    tags: Mapping[str, str] | None = None,
    run_retries: int = 0,
    run_retry_strategy: Literal["from_failure", "all_steps"] = "from_failure",
    failure_classifier: FailureClassifier | None = None,
    asset_events: bool = True,
    stream_asset_events: bool = True,
    dagster_dbt_translator: DagsterDbtTranslator | None = None,
    artifact_retention: ArtifactRetention | None = None,
) -> dg.JobDefinition:
    """Build a Dagster job that runs dbt commands in order, one op per command.

    A failed step skips the steps after it and fails the run. Re-executing a
    failed run "from failure" runs `dbt retry` in the failed step, on that
    step's artifacts from the failed run, then the skipped steps in full.
    Re-executing "from start" runs every command again.

    Args:
        name: The Dagster job name.
        project_dir: The dbt project directory, or a dagster-dbt `DbtProject`
            (its profiles_dir and target are used unless given here).
        steps: dbt commands such as ``"dbt seed"`` or
            ``"dbt run --select tag:daily"``, split like a shell would split
            them but never run through a shell.
        profiles_dir: The directory of profiles.yml. Default: $DBT_PROFILES_DIR,
            then the project directory if it has a profiles.yml, then ~/.dbt.
        target: The dbt target for every step that does not set --target.
        artifacts_root: Where each invocation's artifacts go, one directory per
            run, step and attempt: a local path, or an fsspec URL such as
            s3://bucket/dbt when runs execute on different machines. Default:
            dbt_rerun_artifacts below the Dagster instance's home ($DAGSTER_HOME).
        retry_policy: A Dagster retry policy for every step; each new attempt
            runs `dbt retry` on the previous attempt's artifacts.
        executor: The executor; default: Dagster's in-process executor, which
            runs the chain of steps in one process. Either way the executor is
            wrapped to tag reruns before the first step starts.
        deps: Add a `dbt deps` step first. "auto" adds it when the project
            has a packages.yml or dependencies.yml.
        source_freshness: Add `dbt source freshness` as the first dbt step. It
            may fail without failing the run.
        docs_generate: Add `dbt docs generate` as the last step. It may fail
            without failing the run.
        description: The job description shown in Dagster.
        tags: Tags for every run of the job.
        run_retries: Maximum number of automatic reruns of a failed run by
            Dagster's daemon (needs `run_retries: {enabled: true}` in
            dagster.yaml). Sets the `dagster/max_retries` job tag; a launch
            can override it with that run tag.
        run_retry_strategy: "from_failure" (the failed step runs `dbt retry`)
            or "all_steps" (rerun from start), for Dagster's run retries.
        failure_classifier: Decides which failures automatic retries (the
            daemon's and the retry sensor's) rerun. Default: transient
            errors only (connections, timeouts, locks, "try again").
        asset_events: Report the models, seeds and snapshots each step built
            as asset materializations, and its data tests as asset check
            evaluations, so Dagster's catalog shows the dbt project.
        stream_asset_events: Write those events from a helper process while
            dbt runs (default), instead of in the step after dbt finishes.
            Each event costs Dagster several milliseconds to store, and the
            helper writes them on another core; events it cannot write are
            written by the step. An ephemeral instance never streams.
        dagster_dbt_translator: Maps dbt nodes to asset keys; default:
            dagster-dbt's `DagsterDbtTranslator`.
        artifact_retention: Delete the job's old artifacts after each run,
            keeping what unresolved failures need to be retried.

    Raises:
        DbtJobDefinitionError: an argument is invalid; the message names it and the fix.

    Example:
        .. code-block:: python

            nightly = build_dbt_job(
                "nightly",
                project_dir="dbt_project",
                steps=["dbt seed", "dbt run --select tag:daily", "dbt test"],
                retry_policy=dg.RetryPolicy(max_retries=1),
            )
    """
    check_dbt_version()
    _check_job_tags(tags)
    project = _resolve_project(project_dir, profiles_dir, target)
    _check_profile_target(project)
    spec = _build_spec(
        name,
        project,
        steps,
        artifacts_root=artifacts_root,
        deps=deps,
        source_freshness=source_freshness,
        docs_generate=docs_generate,
    )
    spec = dataclasses.replace(
        spec,
        failure_classifier=failure_classifier or FailureClassifier(),
        max_step_retries=retry_policy.max_retries if retry_policy else 0,
        asset_events=asset_events,
        stream_asset_events=stream_asset_events,
        translator=dagster_dbt_translator,
    )
    run_tags = {**_run_retry_tags(run_retries, run_retry_strategy), **dict(tags or {})}
    step_ops = [
        _build_step_op(spec, step, first=index == 0, retry_policy=retry_policy)
        for index, step in enumerate(spec.steps)
    ]

    return _chain_ops(
        spec,
        step_ops,
        executor=with_rerun_marking(
            executor or dg.in_process_executor, _retention_hook(spec, artifact_retention)
        ),
        description=description,
        tags=run_tags,
    )


def _retention_hook(
    spec: DbtJobSpec, retention: ArtifactRetention | None
) -> Callable[[dg.DagsterInstance], None] | None:
    if retention is None:
        return None

    def prune(instance: dg.DagsterInstance) -> None:
        store = spec.artifact_store(instance)
        root = store.remote_root if isinstance(store, RemoteArtifactStore) else store.root
        report = prune_artifacts(instance, f"{root}/{spec.name}", retention)
        logger.info(
            "Artifact retention for %s: %d deleted, %d kept for retry, %d kept",
            spec.name,
            len(report.deleted),
            len(report.slimmed),
            len(report.kept),
        )

    return prune


def _check_job_tags(tags: Mapping[str, str] | None) -> None:
    reserved = sorted(key for key in (tags or {}) if key in RESERVED_RUN_TAGS)
    if reserved:
        raise DbtJobDefinitionError(
            f"Job tags {', '.join(reserved)} are written by dbt-rerun-dagster on reruns and "
            "failures; remove them from tags= (use run_retries= for Dagster's retry tags)."
        )


@dataclass(frozen=True)
class _Project:
    """The location of a dbt project and its profile: the parts of a DbtProject the job uses."""

    project_dir: Path
    profiles_dir: Path
    target: str | None = None
    profile: str | None = None


def _check_profile_target(project: _Project) -> None:
    """Check that the dbt profile and target exist in profiles.yml, when it parses as YAML.

    profiles.yml may hold Jinja that only dbt can render; names of profiles and
    targets are plain YAML keys in practice, so a parse failure is left to dbt.
    """
    if project.target is not None and not str(project.target).strip():
        raise DbtJobDefinitionError("target must be a non-empty target name, or None")
    profile_name = project.profile or _project_profile_name(Path(project.project_dir))
    profiles_file = Path(project.profiles_dir) / "profiles.yml"
    try:
        profiles = yaml.safe_load(profiles_file.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return
    if not isinstance(profiles, dict) or profile_name is None:
        return
    if profile_name not in profiles:
        raise DbtJobDefinitionError(
            f"Profile {profile_name!r} is not in {profiles_file}; add it there, or pass "
            "profiles_dir= with the directory of the right profiles.yml."
        )
    outputs = (profiles[profile_name] or {}).get("outputs") or {}
    if project.target is not None and project.target not in outputs:
        known = ", ".join(sorted(outputs)) or "none"
        raise DbtJobDefinitionError(
            f"Target {project.target!r} is not in profile {profile_name!r} of {profiles_file} "
            f"(targets: {known}); pass one of them as target=."
        )


def _project_profile_name(project_dir: Path) -> str | None:
    try:
        config = yaml.safe_load((project_dir / "dbt_project.yml").read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return None
    profile = config.get("profile") if isinstance(config, dict) else None

    return str(profile) if profile else None


def _run_retry_tags(run_retries: int, strategy: str) -> dict[str, str]:
    if not isinstance(run_retries, int) or isinstance(run_retries, bool) or run_retries < 0:
        raise DbtJobDefinitionError(
            f"run_retries must be a whole number of 0 or more, got {run_retries!r}"
        )
    if strategy not in _RUN_RETRY_STRATEGIES:
        raise DbtJobDefinitionError(
            f"run_retry_strategy must be 'from_failure' or 'all_steps', got {strategy!r}"
        )
    if run_retries == 0:
        return {}

    return {
        DAGSTER_MAX_RETRIES_TAG: str(run_retries),
        DAGSTER_RETRY_STRATEGY_TAG: _RUN_RETRY_STRATEGIES[strategy],
    }


def _resolve_project(
    project_dir: str | os.PathLike[str] | DbtProject,
    profiles_dir: str | os.PathLike[str] | None,
    target: str | None,
) -> _Project:
    if _is_dbt_project(project_dir):
        base = project_dir
        return _Project(
            Path(base.project_dir),
            profiles_dir=Path(profiles_dir or base.profiles_dir),
            target=target or base.target,
            profile=base.profile,
        )

    path = Path(project_dir).expanduser().resolve()
    if not (path / "dbt_project.yml").is_file():
        raise DbtJobDefinitionError(
            f"project_dir {path} is not a dbt project: it has no dbt_project.yml. "
            "Pass the directory that contains dbt_project.yml."
        )
    profiles = _resolve_profiles_dir(path, profiles_dir)

    return _Project(path, profiles_dir=profiles, target=target)


def _is_dbt_project(value: object) -> bool:
    # A DbtProject exists only if its caller imported dagster-dbt.
    dagster_dbt = sys.modules.get("dagster_dbt")
    return dagster_dbt is not None and isinstance(value, dagster_dbt.DbtProject)


def _resolve_profiles_dir(project_dir: Path, profiles_dir: str | os.PathLike[str] | None) -> Path:
    if profiles_dir is not None:
        candidates = [Path(profiles_dir).expanduser().resolve()]
    elif os.environ.get("DBT_PROFILES_DIR"):
        candidates = [Path(os.environ["DBT_PROFILES_DIR"]).expanduser().resolve()]
    else:
        candidates = [project_dir, Path.home() / ".dbt"]

    for candidate in candidates:
        if (candidate / "profiles.yml").is_file():
            return candidate

    searched = ", ".join(str(candidate) for candidate in candidates)
    raise DbtJobDefinitionError(
        f"No profiles.yml found in {searched}. Pass profiles_dir= with the directory that "
        "contains profiles.yml, or set DBT_PROFILES_DIR."
    )


def _build_spec(
    name: str,
    project: _Project,
    steps: Sequence[str],
    *,
    artifacts_root: str | os.PathLike[str] | None,
    deps: bool | Literal["auto"],
    source_freshness: bool,
    docs_generate: bool,
) -> DbtJobSpec:
    if isinstance(steps, str) or not isinstance(steps, Sequence):
        raise DbtJobDefinitionError(
            f"steps must be a list of dbt command strings, got {type(steps).__name__}: {steps!r}"
        )
    if not steps:
        raise DbtJobDefinitionError(
            f"Job {name!r} has no steps. Pass at least one dbt command, "
            "for example steps=['dbt build']."
        )
    if deps not in (True, False, "auto"):
        raise DbtJobDefinitionError(f"deps must be True, False or 'auto', got {deps!r}")

    project_dir, profiles_dir = Path(project.project_dir), Path(project.profiles_dir)
    commands = parse_steps(steps, project_dir, profiles_dir)
    user_steps = [(command, True) for command in commands]
    before: list[tuple[DbtCommand, bool]] = []
    if deps is True or (deps == "auto" and _has_packages(project_dir)):
        if not any(command.subcommand == "deps" for command in commands):
            before.append((parse_step(0, "dbt deps", project_dir, profiles_dir), True))
    if source_freshness:
        before.append((parse_step(0, "dbt source freshness", project_dir, profiles_dir), False))
    after = []
    if docs_generate:
        after.append((parse_step(0, "dbt docs generate", project_dir, profiles_dir), False))

    all_steps = [*before, *user_steps, *after]
    step_specs = tuple(
        StepSpec(name=f"step_{position}_{command.slug}", command=command, blocking=blocking)
        for position, (command, blocking) in enumerate(all_steps, start=1)
    )

    return DbtJobSpec(
        name=name,
        project_dir=project_dir,
        profiles_dir=profiles_dir,
        target=project.target,
        steps=step_specs,
        artifacts_root=_artifacts_root(artifacts_root),
    )


def _artifacts_root(location: str | os.PathLike[str] | None) -> Path | str | None:
    if location is None:
        return None
    if is_remote_location(location):
        try:
            # Resolving the filesystem imports the scheme's fsspec package.
            _ = UPath(str(location)).fs
        except (ImportError, ValueError) as error:
            raise DbtJobDefinitionError(
                f"artifacts_root {location!r} is not a usable fsspec URL ({error}); install the "
                "fsspec package for its scheme (for example s3fs for s3://) or pass a local path."
            ) from error
        return str(location)

    return Path(location).expanduser().resolve()


def _has_packages(project_dir: Path) -> bool:
    return any((project_dir / file_name).is_file() for file_name in _PACKAGE_FILES)


def _build_step_op(
    spec: DbtJobSpec, step: StepSpec, *, first: bool, retry_policy: dg.RetryPolicy | None
) -> dg.OpDefinition:
    ins = {} if first else {"after": dg.In(dg.Nothing)}
    blocking_note = "" if step.blocking else " (may fail without failing the run)"

    # Op definitions must have names unique within a code location, so each
    # carries its job's name; the graph invokes it under the step name, which
    # is the step key users see (`step_2_dbt_run`).
    @dg.op(
        name=f"{spec.name}__{step.name}",
        description=f"`{step.command.text}`{blocking_note}",
        ins=ins,
        out=dg.Out(dg.Nothing),
        retry_policy=retry_policy,
        required_resource_keys={SETTINGS_RESOURCE_KEY},
        tags={"kind": "dbt"},
    )
    def step_op(context):  # type: ignore[no-untyped-def]
        yield from run_step(context, spec, step)

    return step_op


def _chain_ops(
    spec: DbtJobSpec,
    step_ops: list[dg.OpDefinition],
    *,
    executor: dg.ExecutorDefinition,
    description: str | None,
    tags: Mapping[str, str] | None,
) -> dg.JobDefinition:
    commands = "\n".join(
        f"{index}. `{step.command.text}`" for index, step in enumerate(spec.steps, start=1)
    )
    graph = dg.GraphDefinition(
        name=spec.name,
        node_defs=step_ops,
        dependencies=_chain_dependencies(spec, step_ops),
        description=description or f"dbt job over {spec.project_dir}:\n\n{commands}",
    )

    return graph.to_job(
        executor_def=executor,
        resource_defs={SETTINGS_RESOURCE_KEY: DbtRunSettings()},
        tags=dict(tags or {}),
        metadata={DBT_JOB_METADATA_KEY: str(spec.project_dir)},
    )


def _chain_dependencies(
    spec: DbtJobSpec, step_ops: list[dg.OpDefinition]
) -> dict[dg.NodeInvocation, dict[str, dg.DependencyDefinition]]:
    dependencies: dict[dg.NodeInvocation, dict[str, dg.DependencyDefinition]] = {}
    previous: StepSpec | None = None
    for step, step_op in zip(spec.steps, step_ops, strict=True):
        invocation = dg.NodeInvocation(name=step_op.name, alias=step.name)
        dependencies[invocation] = (
            {} if previous is None else {"after": dg.DependencyDefinition(previous.name)}
        )
        previous = step

    return dependencies


def build_dbt_definitions(
    *jobs: dg.JobDefinition,
    schedules: Sequence[dg.ScheduleDefinition] = (),
    sensors: Sequence[dg.SensorDefinition] = (),
) -> dg.Definitions:
    """Put one or more dbt jobs (with optional schedules and sensors) into `Definitions`.

    Raises:
        DbtJobDefinitionError: no job given, two jobs share a name, or an
            object is not a job built by `build_dbt_job`.
    """
    if not jobs:
        raise DbtJobDefinitionError(
            "build_dbt_definitions needs at least one job from build_dbt_job"
        )
    names: set[str] = set()
    for job in jobs:
        if not isinstance(job, dg.JobDefinition) or DBT_JOB_METADATA_KEY not in job.metadata:
            raise DbtJobDefinitionError(
                f"{job!r} is not a job built by build_dbt_job; "
                "pass jobs that build_dbt_job returned"
            )
        if job.name in names:
            raise DbtJobDefinitionError(
                f"Two jobs are named {job.name!r}; job names must be unique"
            )
        names.add(job.name)

    return dg.Definitions(jobs=list(jobs), schedules=list(schedules), sensors=list(sensors))
