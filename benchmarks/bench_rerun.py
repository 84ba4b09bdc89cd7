"""Scenario 2: rerun from failure through the plugin against `dbt retry` on the plain CLI.

Usage: python benchmarks/bench_rerun.py [--models 200 1000] [--rounds 3]

Set-up, untimed, once per project size: BENCH_FAIL_MODELS breaks the middle
domain's hub model (synthetic_project.default_failing_model), so the
three-step job (seed, run, test) fails in its run step. It fails once
through the plugin, as a run on a persistent Dagster instance, and once on
the plain CLI, where `dbt run` exits 1 after `dbt seed` and cron would stop
before `dbt test`. Each failed state is saved and restored, at the same
paths, before every timed rerun. Reruns have the failure switch unset (the fix).

Contenders, alternated within each round (the first one rotates):
- cli: `dbt retry` then `dbt test`, two dbt processes, the plain-CLI way to
  finish the failed job; `dbt retry` alone is reported too;
- plugin from failure: a new process (as a run worker) that calls
  `dagster.execute_job` with `ReexecutionOptions.from_failure`;
- plugin from start: the same with `ReexecutionOptions(parent_run_id)`.

Nodes executed are counted from the run_results.json of each invocation.
The column "exact" is yes when the rerun ran exactly the failed and skipped
nodes of the parent's run step plus every test of the test step, which never ran.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from harness import (
    PYTHON,
    BENCH_DIR,
    NodeSet,
    Timings,
    bench_env,
    copy_tree,
    dbt_argv,
    fmt_ratio,
    fresh_project,
    log,
    markdown_table,
    new_dagster_home,
    plugin_run_results,
    pristine_project,
    rotated,
    run_measured,
)
from synthetic_project import default_failing_model

CONTENDERS = ("cli", "plugin_from_failure", "plugin_from_start")
JOB = "bench_nightly"
RUNS_SCRIPT = BENCH_DIR / "dagster_runs.py"


class FailedState:
    """The saved state after a failed job: work paths, snapshot paths and the parent's results."""

    def __init__(self, workdir: Path, name: str) -> None:
        self.project = workdir / name / "project"
        self.home = workdir / name / "dagster_home"
        self.snapshot = workdir / f"{name}_snapshot"
        self.parent_run_id: str | None = None
        self.parent_nodes: NodeSet | None = None
        # Peak memory of the failing invocation: (max RSS MB, polled tree peak MB).
        self.parent_memory: tuple[float | None, float] | None = None

    def save(self) -> None:
        copy_tree(self.project, self.snapshot / "project")
        if self.home.exists():
            copy_tree(self.home, self.snapshot / "dagster_home")

    def restore(self) -> None:
        copy_tree(self.snapshot / "project", self.project)
        if (self.snapshot / "dagster_home").exists():
            copy_tree(self.snapshot / "dagster_home", self.home)


def fail_with_plugin(pristine: Path, workdir: Path, failing_model: str, job: str, function: str) -> FailedState:
    """Run a plugin job once with `failing_model` broken and save the failed state."""
    state = FailedState(workdir, f"plugin_{job}")
    fresh_project(pristine, state.project)
    new_dagster_home(state.home)
    measured = run_measured(
        [PYTHON, RUNS_SCRIPT, "execute", "plugin_location", function],
        cwd=workdir,
        env=bench_env(state.project, dagster_home=state.home, fail_models=[failing_model], plugin=True),
        log_path=workdir / "logs" / f"parent-plugin-{job}.log",
    )
    summary = measured.last_json_line()
    if summary["success"]:
        raise RuntimeError(f"the parent run of {job} succeeded although {failing_model} was broken")
    state.parent_run_id = summary["run_id"]
    state.parent_nodes = NodeSet.from_files(plugin_run_results(state.home, job, state.parent_run_id))
    state.parent_memory = (measured.max_rss_mb, measured.tree_peak_mb)
    state.save()

    return state


def fail_with_cli(pristine: Path, workdir: Path, failing_model: str, command: str) -> FailedState:
    """Run `dbt seed` and `dbt <command>` with `failing_model` broken and save the failed state."""
    state = FailedState(workdir, f"cli_{command}")
    fresh_project(pristine, state.project)
    env = bench_env(state.project, fail_models=[failing_model])
    if command != "build":
        run_measured(dbt_argv("seed"), cwd=state.project, env=env, log_path=workdir / "logs" / "parent-cli-seed.log")
    measured = run_measured(
        dbt_argv(command),
        cwd=state.project,
        env=env,
        log_path=workdir / "logs" / f"parent-cli-{command}.log",
        expected_returncodes=(1,),
    )
    state.parent_memory = (measured.max_rss_mb, measured.tree_peak_mb)
    state.parent_nodes = NodeSet.from_files([state.project / "target" / "run_results.json"])
    state.save()

    return state


def rerun_cli(state: FailedState, workdir: Path, label: str) -> dict:
    state.restore()
    env = bench_env(state.project)
    retry = run_measured(dbt_argv("retry"), cwd=state.project, env=env, log_path=workdir / "logs" / f"{label}-cli-retry.log")
    retried = NodeSet.from_files([state.project / "target" / "run_results.json"])
    test = run_measured(dbt_argv("test"), cwd=state.project, env=env, log_path=workdir / "logs" / f"{label}-cli-test.log")
    tested = NodeSet.from_files([state.project / "target" / "run_results.json"])

    return {
        "seconds": retry.seconds + test.seconds,
        "retry_seconds": retry.seconds,
        "retried": retried,
        "tested": tested,
    }


def rerun_plugin(state: FailedState, workdir: Path, label: str, mode: str, function: str, job: str) -> dict:
    state.restore()
    measured = run_measured(
        [PYTHON, RUNS_SCRIPT, "reexecute", "plugin_location", function, state.parent_run_id, mode],
        cwd=workdir,
        env=bench_env(state.project, dagster_home=state.home, plugin=True),
        log_path=workdir / "logs" / f"{label}-plugin-{mode}.log",
    )
    summary = measured.last_json_line()
    if not summary["success"]:
        raise RuntimeError(f"the {mode} rerun of {job} failed; see {workdir / 'logs'}")
    files = plugin_run_results(state.home, job, summary["run_id"])
    # The next restore deletes these artifacts, so read them now.
    by_step: dict[str, NodeSet] = {}
    for path in files:
        step = path.parent.parent.name
        by_step[step] = NodeSet(by_step.get(step, NodeSet({})).statuses | NodeSet.from_files([path]).statuses)

    return {
        "seconds": measured.seconds,
        "execute_job_seconds": summary["execute_job_seconds"],
        "step_seconds": summary["step_seconds"],
        "nodes": NodeSet.from_files(files),
        "nodes_by_step": by_step,
    }


def run(workroot: Path, model_counts: list[int], rounds: int) -> dict:
    """Run scenario 2 and return its markdown tables and raw samples."""
    time_rows, node_rows, raw = [], [], {}
    for model_count in model_counts:
        pristine = pristine_project(workroot, model_count)
        failing = default_failing_model(model_count)
        workdir = workroot / "rerun" / f"n{model_count}"
        log(f"[rerun] N={model_count}: failing {failing} in the parent runs (untimed)")
        plugin_state = fail_with_plugin(pristine, workdir, failing, JOB, "get_nightly_job")
        cli_state = fail_with_cli(pristine, workdir, failing, "run")

        seconds, retry_only, retry_step, execute_job = Timings(), Timings(), Timings(), Timings()
        nodes: dict[str, object] = {}
        for round_index in range(rounds):
            label = f"round{round_index + 1}"
            for name in rotated(CONTENDERS, round_index):
                if name == "cli":
                    outcome = rerun_cli(cli_state, workdir, label)
                    retry_only.add(name, outcome["retry_seconds"])
                    nodes[name] = (outcome["retried"], outcome["tested"])
                else:
                    mode = name.removeprefix("plugin_")
                    outcome = rerun_plugin(plugin_state, workdir, label, mode, "get_nightly_job", JOB)
                    execute_job.add(name, outcome["execute_job_seconds"])
                    retry_step.add(name, outcome["step_seconds"].get("step_2_dbt_run", 0.0))
                    nodes[name] = outcome["nodes"]
                    nodes[f"{name}_by_step"] = outcome["nodes_by_step"]
                seconds.add(name, outcome["seconds"])
                log(f"[rerun] N={model_count} {label} {name:<20} {outcome['seconds']:7.2f} s")

        time_rows.append(_time_row(model_count, rounds, seconds, retry_only, retry_step, execute_job))
        rows = _node_rows(model_count, failing, plugin_state, cli_state, nodes)
        node_rows.extend(rows)
        raw[model_count] = {
            "seconds": seconds.samples,
            "cli_retry_seconds": retry_only.samples,
            "plugin_retry_step_seconds": retry_step.samples["plugin_from_failure"],
            "exact": {row[2]: row[4] for row in rows},
        }

    time_table = markdown_table(
        [
            "N models",
            "rounds",
            "cli `dbt retry` s",
            "cli `dbt retry` + `dbt test` s",
            "plugin from failure s",
            "from failure / cli retry+test",
            "from failure / cli retry alone",
            "plugin from start s",
            "plugin from failure: in execute_job s",
            "plugin from failure: retry step s (event log)",
        ],
        time_rows,
    )
    node_table = markdown_table(
        ["N models", "failing model", "contender", "nodes executed", "exact"], node_rows
    )

    return {"time_table": time_table, "node_table": node_table, "raw": raw}


def _time_row(model_count, rounds, seconds, retry_only, retry_step, execute_job) -> list:
    cli = seconds.median("cli")
    from_failure = seconds.median("plugin_from_failure")

    return [
        model_count,
        rounds,
        f"{retry_only.median('cli'):.2f}",
        f"{cli:.2f}",
        f"{from_failure:.2f}",
        fmt_ratio(from_failure, cli),
        fmt_ratio(from_failure, retry_only.median("cli")),
        f"{seconds.median('plugin_from_start'):.2f}",
        f"{execute_job.median('plugin_from_failure'):.2f}",
        f"{retry_step.median('plugin_from_failure'):.2f}",
    ]


def _node_rows(model_count, failing, plugin_state, cli_state, nodes) -> list[list]:
    """Compare what each rerun executed with what it should have executed."""
    parent_failed = plugin_state.parent_nodes.with_status("error", "skipped")
    cli_parent_failed = cli_state.parent_nodes.with_status("error", "skipped")
    retried, tested = nodes["cli"]
    all_tests = tested.executed()

    # The plugin's from-failure rerun: step 2 retried, step 3 ran in full, step 1 did not run.
    by_step = dict(nodes["plugin_from_failure_by_step"])
    plugin_retried = by_step.pop("step_2_dbt_run", NodeSet({})).executed()
    plugin_tested = by_step.pop("step_3_dbt_test", NodeSet({})).executed()
    plugin_other = set().union(*(step_nodes.executed() for step_nodes in by_step.values()))
    plugin_exact = plugin_retried == parent_failed and plugin_tested == all_tests and not plugin_other
    cli_exact = retried.executed() == cli_parent_failed and parent_failed == cli_parent_failed

    from_start = nodes["plugin_from_start"]
    described = NodeSet(retried.statuses | tested.statuses)

    return [
        [model_count, failing, "parent run step: failed + skipped", plugin_state.parent_nodes.by_type(parent_failed), "-"],
        [model_count, failing, "cli `dbt retry` + `dbt test`", described.by_type(retried.executed() | all_tests), "yes" if cli_exact else "NO"],
        [
            model_count,
            failing,
            "plugin from failure",
            nodes["plugin_from_failure"].by_type(),
            "yes" if plugin_exact else "NO",
        ],
        [model_count, failing, "plugin from start", from_start.by_type(), "-"],
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, nargs="+", default=[200, 1000], help="project sizes (default 200 1000)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each contender (default 3)")
    parser.add_argument("--workdir", type=Path, help="work directory (default: a new /tmp/bench_* directory, removed at the end)")
    options = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench_", dir="/tmp") as tmp:
        result = run(options.workdir or Path(tmp), options.models, options.rounds)

    print("\nScenario 2: rerun after one failed mid-graph model\n")
    print(result["time_table"])
    print()
    print(result["node_table"])


if __name__ == "__main__":
    main()
