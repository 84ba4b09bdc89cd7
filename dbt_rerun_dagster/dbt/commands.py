"""Parsing and validation of step commands such as `dbt run --select tag:daily`."""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import click
import yaml

from dbt_rerun_dagster.compat import RETRY_SUPPORTED_COMMANDS
from dbt_rerun_dagster.errors import InvalidStepError

# Subcommands a step may not run, with the reason given to the user.
REJECTED_SUBCOMMANDS: Final = {
    "retry": "the plugin runs `dbt retry` itself when a run resumes from failure",
    "init": "`dbt init` is interactive and creates a new project",
    "docs serve": "`dbt docs serve` starts a web server that never exits",
}

# Options the job sets for every invocation, so a step may not set them.
MANAGED_OPTIONS: Final = {
    "--project-dir": "the job's project_dir",
    "--profiles-dir": "the job's profiles_dir",
    "--target-path": "the artifact directory the plugin gives each invocation",
    "--log-path": "the artifact directory the plugin gives each invocation",
}

# Options that make dbt stricter and that `dbt retry` does not replay in
# dbt-core 1.6 to 1.11 (`warn_error` is in its IGNORE_PARENT_FLAGS). They are
# passed again so a retry is never more lenient than the original command.
STRICTNESS_OPTIONS: Final = ("--warn-error", "--warn-error-options")

_SLUG_UNSAFE = re.compile(r"[^a-z0-9]+")


@dataclass(frozen=True)
class DbtCommand:
    """One validated dbt command of a job, for example `dbt run --select tag:daily`.

    Attributes:
        text: The command as the user wrote it.
        args: The arguments after `dbt`, split like a POSIX shell would.
        subcommand: The dbt subcommand, with a space for nested ones
            (`docs generate`, `source freshness`).
    """

    text: str
    args: tuple[str, ...]
    subcommand: str
    vars_yaml: str | None = None
    option_names: frozenset[str] = frozenset()

    def accepts(self, option: str) -> bool:
        """Return whether the subcommand takes `option`; dbt deps takes no --target-path."""
        return option in self.option_names

    @property
    def vars(self) -> dict[str, Any]:
        """Return the command's own `--vars`, parsed as dbt parses them."""
        if not self.vars_yaml:
            return {}
        parsed = yaml.safe_load(self.vars_yaml)

        return dict(parsed) if isinstance(parsed, dict) else {}

    @property
    def supports_retry(self) -> bool:
        return self.subcommand in RETRY_SUPPORTED_COMMANDS

    @property
    def slug(self) -> str:
        """Identifier-safe form of the subcommand, such as `dbt_run_operation`."""
        return "dbt_" + _SLUG_UNSAFE.sub("_", self.subcommand).strip("_")

    def strictness_args(self) -> tuple[str, ...]:
        """Return the `--warn-error` options of this command, to pass to `dbt retry`."""
        found: list[str] = []
        tokens = list(self.args)
        for index, token in enumerate(tokens):
            name, has_value, value = token.partition("=")
            if name == "--warn-error" and not has_value:
                found.append(name)
            elif name == "--warn-error-options":
                if has_value:
                    found.extend([name, value])
                elif index + 1 < len(tokens):
                    found.extend([name, tokens[index + 1]])

        return tuple(found)

    def has_option(self, name: str) -> bool:
        return any(token == name or token.startswith(name + "=") for token in self.args)


def parse_step(position: int, text: str, project_dir: Path, profiles_dir: Path) -> DbtCommand:
    """Parse one step command and check it against dbt's own command line.

    Raises:
        InvalidStepError: naming the step, the command and what to change.
    """
    if not isinstance(text, str) or not text.strip():
        raise InvalidStepError(position, str(text), "a step must be a non-empty dbt command string")

    args = _split(position, text)
    _reject_managed_options(position, text, args)
    subcommand, params, option_names = _validate_with_dbt_cli(
        position, text, args, project_dir, profiles_dir
    )
    if subcommand in REJECTED_SUBCOMMANDS:
        raise InvalidStepError(position, text, REJECTED_SUBCOMMANDS[subcommand])
    step_vars = params.get("vars")
    vars_yaml = (
        yaml.safe_dump(dict(step_vars)) if isinstance(step_vars, dict) and step_vars else None
    )

    return DbtCommand(
        text=text,
        args=tuple(args),
        subcommand=subcommand,
        vars_yaml=vars_yaml,
        option_names=option_names,
    )


def parse_steps(steps: Sequence[str], project_dir: Path, profiles_dir: Path) -> list[DbtCommand]:
    """Parse every step of a job; positions in messages start at 1."""
    return [
        parse_step(position, text, project_dir, profiles_dir)
        for position, text in enumerate(steps, start=1)
    ]


def _split(position: int, text: str) -> list[str]:
    try:
        tokens = shlex.split(text)
    except ValueError as error:
        raise InvalidStepError(
            position, text, f"it cannot be split into arguments ({error}); check its quotes"
        ) from error

    if tokens and tokens[0] == "dbt":
        tokens = tokens[1:]
    elif tokens and Path(tokens[0]).name == "dbt":
        raise InvalidStepError(
            position, text, "write the command without a path to dbt, for example 'dbt run'"
        )
    if not tokens:
        raise InvalidStepError(position, text, "it names no dbt subcommand, for example 'dbt run'")

    return tokens


def _reject_managed_options(position: int, text: str, args: list[str]) -> None:
    for token in args:
        if token in ("-h", "--help", "-v", "-V", "--version"):
            raise InvalidStepError(position, text, f"remove {token}: a step must run a dbt command")
        name = token.partition("=")[0]
        if name in MANAGED_OPTIONS:
            raise InvalidStepError(
                position, text, f"remove {name}: it is set from {MANAGED_OPTIONS[name]}"
            )


def _validate_with_dbt_cli(
    position: int, text: str, args: list[str], project_dir: Path, profiles_dir: Path
) -> tuple[str, dict[str, Any], frozenset[str]]:
    """Parse `args` with dbt's click command line.

    Returns the subcommand, its parsed parameters and the option names it accepts.

    Using dbt's own parser catches unknown subcommands, misspelled options and
    bad option values (invalid YAML in --vars, a non-integer --threads) at
    definition time. Nothing is executed: click only builds contexts.
    """
    from dbt.cli.main import cli

    try:
        context = cli.make_context("dbt", list(args))
        names: list[str] = []
        command: click.Command = cli
        remaining = [*getattr(context, "protected_args", []), *context.args]
        while isinstance(command, click.Group):
            if not remaining:
                raise InvalidStepError(
                    position, text, f"'dbt {' '.join(names)}' needs a subcommand"
                )
            name, next_command, remaining = command.resolve_command(context, remaining)
            if name is None or next_command is None:
                raise InvalidStepError(position, text, "it names no dbt subcommand")
            names.append(name)
            command = next_command
            if isinstance(command, click.Group) and remaining:
                context = command.make_context(name, remaining, parent=context)
                remaining = [*getattr(context, "protected_args", []), *context.args]
        option_names = frozenset(
            name for param in command.params for name in (*param.opts, *param.secondary_opts)
        )
        managed = ["--project-dir", str(project_dir), "--profiles-dir", str(profiles_dir)]
        command_context = command.make_context(names[-1], [*remaining, *managed], parent=context)
    except click.exceptions.NoSuchOption as error:
        raise InvalidStepError(position, text, _click_message(error)) from error
    except click.exceptions.UsageError as error:
        message = _click_message(error)
        if "No such command" in message and text.split()[0] != "dbt":
            message = (
                f"it is not a dbt command ({message}); a step runs one dbt subcommand, "
                "such as 'dbt run', and never goes through a shell"
            )
        elif "No such command" in message:
            message += "; run 'dbt --help' for the list of subcommands"
        raise InvalidStepError(position, text, message) from error
    except click.exceptions.ClickException as error:
        raise InvalidStepError(position, text, _click_message(error)) from error

    return " ".join(names), dict(command_context.params), option_names


def _click_message(error: click.exceptions.ClickException) -> str:
    return error.format_message().strip().rstrip(".")
