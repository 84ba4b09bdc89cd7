"""Launch-time settings of one run, set in run config under `resources.dbt_rerun.config`.

Example run config for a rerun from failure with more threads::

    resources:
      dbt_rerun:
        config:
          threads: 8
          vars: "{run_label: backfill}"
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import dagster as dg
import yaml
from pydantic import Field, ValidationError

from dbt_rerun_dagster.errors import DbtRerunError
from dbt_rerun_dagster.orchestration.rerun import RerunInfo, detect_rerun
from dbt_rerun_dagster.tags import (
    REQUESTED_MODE_TAG,
    RERUN_MODE_FROM_FAILURE,
    THREADS_TAG,
    VARS_TAG,
)

SETTINGS_RESOURCE_KEY = "dbt_rerun"

# Settings that a run tag can set when the launch passes no run config.
_SETTING_TAGS = {"threads": THREADS_TAG, "vars": VARS_TAG, "rerun_mode": REQUESTED_MODE_TAG}


class DbtRunSettingsError(DbtRerunError, dg.DagsterInvariantViolationError):
    """Run config requests something a run cannot do."""


class DbtRunSettings(dg.ConfigurableResource):
    """Settings a user may change when launching a run or a rerun of a dbt job."""

    rerun_mode: Literal["auto", "from_failure", "from_start"] = Field(
        default="auto",
        description=(
            "How a rerun treats its failed step: 'from_failure' runs dbt retry, 'from_start' "
            "runs the full command, 'auto' decides from the steps the rerun executes. "
            "Ignored on fresh runs."
        ),
    )
    threads: int | None = Field(
        default=None, ge=1, description="dbt --threads for every invocation of this run."
    )
    vars: str | None = Field(
        default=None,
        description=(
            "dbt --vars as a YAML mapping, merged over each step's own --vars "
            "(for example '{run_label: backfill}')."
        ),
    )
    target: str | None = Field(
        default=None,
        description="dbt --target for this run. Rejected on a rerun from failure that changes it.",
    )
    profile: str | None = Field(
        default=None,
        description="dbt --profile for this run. Rejected on a rerun from failure that changes it.",
    )

    def parsed_vars(self) -> dict[str, Any]:
        return dict(yaml.safe_load(self.vars)) if self.vars else {}


def settings_of_run(run: dg.DagsterRun) -> DbtRunSettings:
    """Return a run's settings: its run config, then its `dbt_rerun/` setting tags."""
    return settings_from_run_config(run.run_config, run.tags)


def settings_from_run_config(
    run_config: Mapping[str, Any] | None, tags: Mapping[str, str] | None = None
) -> DbtRunSettings:
    """Return the settings in run config, falling back to setting tags, then defaults."""
    resources = (run_config or {}).get("resources") or {}
    config = dict((resources.get(SETTINGS_RESOURCE_KEY) or {}).get("config") or {})
    for key, tag in (
        ("threads", THREADS_TAG),
        ("vars", VARS_TAG),
        ("rerun_mode", REQUESTED_MODE_TAG),
    ):
        if config.get(key) is None and (tags or {}).get(tag):
            config[key] = (tags or {})[tag]
    try:
        settings = DbtRunSettings(**config)
    except ValidationError as error:
        problems = "; ".join(item["msg"] for item in error.errors())
        raise DbtRunSettingsError(
            f"Invalid run config under resources.{SETTINGS_RESOURCE_KEY}.config: {problems}"
        ) from error
    _check_vars(settings.vars)

    return settings


def _check_vars(value: str | None) -> None:
    # Checked here rather than in a pydantic validator: Dagster initializes the
    # resource inside the run, where a validator error surfaces as a resource
    # failure instead of this message (Dagster 1.13).
    if value is None:
        return
    try:
        parsed = yaml.safe_load(value)
    except yaml.YAMLError as error:
        raise DbtRunSettingsError(
            f"Run config vars {value!r} is not valid YAML: {error}"
        ) from error
    if not isinstance(parsed, dict):
        raise DbtRunSettingsError(
            f"Run config vars must be a YAML mapping such as '{{key: value}}', got {value!r}"
        )


def check_rerun_settings(
    info: RerunInfo, settings: DbtRunSettings, parent_settings: DbtRunSettings | None
) -> None:
    """Reject a rerun from failure that would change the target or profile.

    `dbt retry` reruns part of a step against the parent's target; another
    target would leave the step's output split across two environments.
    """
    if info.mode != RERUN_MODE_FROM_FAILURE:
        return
    parent = parent_settings or DbtRunSettings()
    for name in ("target", "profile"):
        requested, original = getattr(settings, name), getattr(parent, name)
        if requested is not None and requested != original:
            raise DbtRunSettingsError(
                f"A rerun from failure cannot change the dbt {name} (run config asks for "
                f"{requested!r}, run {info.parent_run_id} used {original or 'the default'}), "
                f"because dbt retry must rebuild the failed nodes where the parent run built "
                f"the others. Remove {name} from the run config, or rerun from start."
            )


def resolve_rerun(
    instance: dg.DagsterInstance, run: dg.DagsterRun, step_order: list[str]
) -> RerunInfo:
    """Detect a run's rerun mode, honouring and checking its run config.

    Raises:
        DbtRunSettingsError: the run config requests that a rerun from failure
            change the target or profile.
    """
    settings = settings_of_run(run)
    info = detect_rerun(instance, run, step_order, settings.rerun_mode)
    parent = instance.get_run_by_id(run.parent_run_id) if run.parent_run_id else None
    parent_settings = settings_of_run(parent) if parent else None
    check_rerun_settings(info, settings, parent_settings)

    return info
