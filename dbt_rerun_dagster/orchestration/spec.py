"""The validated description of a dbt job that its ops run from."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg
import yaml
from upath import UPath

from dbt_rerun_dagster.artifacts import ArtifactStore, RemoteArtifactStore
from dbt_rerun_dagster.dbt.classify import FailureClassifier
from dbt_rerun_dagster.dbt.commands import DbtCommand
from dbt_rerun_dagster.orchestration.settings import DbtRunSettings

if TYPE_CHECKING:
    from dagster_dbt import DagsterDbtTranslator

DEFAULT_ARTIFACTS_DIRNAME = "dbt_rerun_artifacts"
# Local directory below $DAGSTER_HOME where dbt writes before an upload to an
# artifact root URL.
SCRATCH_DIRNAME = "dbt_rerun_scratch"


@dataclass(frozen=True)
class StepSpec:
    """One step of a job: its op name and its dbt command."""

    name: str
    command: DbtCommand
    blocking: bool = True


@dataclass(frozen=True)
class DbtJobSpec:
    """Everything the step ops of one job need at run time."""

    name: str
    project_dir: Path
    profiles_dir: Path
    target: str | None
    steps: tuple[StepSpec, ...]
    artifacts_root: Path | str | None
    failure_classifier: FailureClassifier = FailureClassifier()
    max_step_retries: int = 0
    asset_events: bool = True
    stream_asset_events: bool = True
    # None: dagster-dbt's default translator, which the asset event writer
    # applies in its own process, so run workers need not import dagster-dbt.
    translator: DagsterDbtTranslator | None = field(default=None, compare=False)

    def translator_or_default(self) -> DagsterDbtTranslator:
        if self.translator is not None:
            return self.translator
        from dagster_dbt import DagsterDbtTranslator

        return DagsterDbtTranslator()

    @property
    def step_names(self) -> list[str]:
        return [step.name for step in self.steps]

    def artifact_store(self, instance: dg.DagsterInstance) -> ArtifactStore:
        """Return the job's artifact store; by default it lies below $DAGSTER_HOME."""
        home = Path(instance.root_directory)
        if isinstance(self.artifacts_root, str):
            return RemoteArtifactStore(
                root=home / SCRATCH_DIRNAME,
                job_name=self.name,
                remote_root=UPath(self.artifacts_root),
            )

        return ArtifactStore(
            root=self.artifacts_root or home / DEFAULT_ARTIFACTS_DIRNAME, job_name=self.name
        )

    def invocation_args(
        self,
        command: DbtCommand,
        dbt_args: tuple[str, ...],
        target_dir: Path,
        settings: DbtRunSettings | None = None,
    ) -> list[str]:
        """Add the options every invocation gets, and the run's settings, to dbt arguments."""
        settings = settings or DbtRunSettings()
        is_retry = dbt_args[0] == "retry"

        def accepted(option: str) -> bool:
            # dbt retry takes all of these; dbt deps and debug take no --target-path.
            return is_retry or command.accepts(option)

        args = [*dbt_args, "--project-dir", str(self.project_dir)]
        args += ["--profiles-dir", str(self.profiles_dir)]
        # dbt clean deletes its target path when the project sets no clean-targets.
        if accepted("--target-path") and command.subcommand != "clean":
            args += ["--target-path", str(target_dir)]
        if accepted("--log-path"):
            args += ["--log-path", str(target_dir)]
        # dbt's colour codes would end up in Dagster's logs and error messages.
        if accepted("--no-use-colors"):
            args.append("--no-use-colors")
        if settings.threads is not None and accepted("--threads"):
            args += ["--threads", str(settings.threads)]
        # dbt keeps the last --vars; `dbt retry` replaces the replayed vars with
        # it, so the step's own vars are merged in first.
        if settings.vars and accepted("--vars"):
            args += ["--vars", yaml.safe_dump({**command.vars, **settings.parsed_vars()})]
        # `dbt retry` replays the target and profile of the invocation it retries.
        if is_retry:
            return args
        if settings.profile and accepted("--profile"):
            args += ["--profile", settings.profile]
        if settings.target and accepted("--target"):
            args += ["--target", settings.target]
        elif self.target and accepted("--target") and not _sets_target(command):
            args += ["--target", self.target]

        return args


def _sets_target(command: DbtCommand) -> bool:
    return command.has_option("--target") or command.has_option("-t")
