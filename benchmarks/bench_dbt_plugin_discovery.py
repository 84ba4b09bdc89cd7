"""Side effect of a regular install: plain dbt commands import dbt_rerun_dagster.

Usage: python benchmarks/bench_dbt_plugin_discovery.py [--models 50] [--rounds 5]

dbt-core imports every top-level module whose name starts with `dbt_` that
`pkgutil.iter_modules()` finds on sys.path, looking for dbt plugins
(`PluginManager.get_prefixed_modules` in dbt/plugins/manager.py, dbt-core
1.11). A regular (non-editable) install puts dbt_rerun_dagster in
site-packages, where pkgutil finds it, so every dbt command in that
environment imports it, and with it Dagster and dagster-dbt. The editable
install of this repository hides the package from pkgutil, so the other
scenarios do not pay this.

Contenders, alternated within each round (the first one rotates), running
`dbt test` on a project that was seeded and run once beforehand (untimed):
- plain: the environment as installed here (editable install);
- on path: a copy of dbt_rerun_dagster on PYTHONPATH, where pkgutil finds it
  as it would find it in site-packages after `pip install .`.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from harness import (
    REPO_ROOT,
    Timings,
    bench_env,
    dbt_argv,
    fmt_ratio,
    fresh_project,
    log,
    markdown_table,
    pristine_project,
    rotated,
    run_measured,
)

CONTENDERS = ("plain", "on_path")


def run(workroot: Path, model_counts: list[int], rounds: int) -> dict:
    """Measure `dbt test` with and without the package visible to dbt's plugin discovery."""
    rows, raw = [], {}
    package_dir = workroot / "plugin_discovery" / "site"
    shutil.rmtree(package_dir, ignore_errors=True)
    shutil.copytree(
        REPO_ROOT / "dbt_rerun_dagster",
        package_dir / "dbt_rerun_dagster",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    for model_count in model_counts:
        workdir = workroot / "plugin_discovery" / f"n{model_count}"
        project = fresh_project(pristine_project(workroot, model_count), workdir / "project")
        plain_env = bench_env(project)
        path_env = {**plain_env, "PYTHONPATH": str(package_dir)}
        for command in ("seed", "run"):
            run_measured(dbt_argv(command), cwd=project, env=plain_env, log_path=workdir / "logs" / f"{command}.log")

        seconds, max_rss = Timings(), Timings()
        for round_index in range(rounds):
            for name in rotated(CONTENDERS, round_index):
                measured = run_measured(
                    dbt_argv("test"),
                    cwd=project,
                    env=plain_env if name == "plain" else path_env,
                    log_path=workdir / "logs" / f"round{round_index + 1}-{name}.log",
                )
                seconds.add(name, measured.seconds)
                max_rss.add(name, measured.max_rss_mb or 0.0)
                log(
                    f"[discovery] N={model_count} round {round_index + 1} {name:<8} "
                    f"{measured.seconds:6.2f} s  max RSS {measured.max_rss_mb:6.0f} MB"
                )

        raw[model_count] = {"seconds": seconds.samples, "max_rss_mb": max_rss.samples}
        plain, on_path = seconds.median("plain"), seconds.median("on_path")
        rows.append(
            [
                model_count,
                rounds,
                f"{plain:.2f}",
                f"{on_path:.2f}",
                f"{on_path - plain:+.2f} ({fmt_ratio(on_path, plain)})",
                f"{max_rss.median('plain'):.0f}",
                f"{max_rss.median('on_path'):.0f}",
                f"{max_rss.median('on_path') - max_rss.median('plain'):+.0f}",
            ]
        )

    table = markdown_table(
        [
            "N models",
            "rounds",
            "`dbt test` plain s",
            "`dbt test` with package on path s",
            "difference s",
            "plain max RSS MB",
            "on path max RSS MB",
            "difference MB",
        ],
        rows,
    )

    return {"table": table, "raw": raw}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, nargs="+", default=[50], help="project sizes (default 50)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of each contender (default 5)")
    parser.add_argument("--workdir", type=Path, help="work directory (default: a new /tmp/bench_* directory, removed at the end)")
    options = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench_", dir="/tmp") as tmp:
        result = run(options.workdir or Path(tmp), options.models, options.rounds)

    print("\nSide effect of a regular install on plain dbt commands\n")
    print(result["table"])


if __name__ == "__main__":
    main()
