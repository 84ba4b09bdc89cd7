"""Generate a synthetic dbt project on DuckDB with N models, for benchmarks.

Usage: python benchmarks/synthetic_project.py OUT_DIR --models 200 [--threads 4]

The project has 3 seeds and N models in domains of 25 models each. A domain
has a staging view over a seed, a chain of 4 models, a hub table, and 19
models that fan out from the hub. Some of those form chains of two, every
second domain has one incremental model among them, and the last one joins
the hub with the previous domain's hub. Generic data tests (`not_null`,
`unique`) cover about a third of the models, and one singular test checks
every hub.

Failure switch: list model names in the environment variable
BENCH_FAIL_MODELS (comma-separated) and those models raise a DuckDB error
at run time, from a pre-hook, the way a model with a bad query fails. The
default failing model of a benchmark is the hub of the middle domain
(`default_failing_model`): it has 5 ancestors and about 20 descendants.

The generator is deterministic: the same N gives the same files.
"""

from __future__ import annotations

import argparse
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

FAIL_ENV_VAR: Final = "BENCH_FAIL_MODELS"
PROJECT_NAME: Final = "bench_synthetic"
DOMAIN_SIZE: Final = 25
MIN_MODELS: Final = 10
HUB_POSITION: Final = 5
INCREMENTAL_POSITION: Final = 10
SEED_NAMES: Final = ("raw_orders", "raw_payments", "raw_events")
SEED_ROWS: Final = 500
GRAPH_FILE: Final = "bench_graph.json"


@dataclass
class Model:
    """One generated model: its name, materialization, parents and tests."""

    name: str
    domain: int
    position: int
    materialized: str
    parents: list[str] = field(default_factory=list)
    seed: str | None = None
    aggregate: bool = False
    tests: list[str] = field(default_factory=list)


def model_name(index: int) -> str:
    """Return the name of the model at 0-based `index`: m_0001, m_0002, ..."""
    return f"m_{index + 1:04d}"


def default_failing_model(model_count: int) -> str:
    """Return the hub of the middle domain, the model a benchmark breaks by default."""
    domains = (model_count + DOMAIN_SIZE - 1) // DOMAIN_SIZE
    middle = domains // 2
    # The last domain may be too short to have a hub.
    while middle * DOMAIN_SIZE + HUB_POSITION >= model_count:
        middle -= 1

    return model_name(middle * DOMAIN_SIZE + HUB_POSITION)


def plan_models(model_count: int) -> list[Model]:
    """Lay out the model graph that the module docstring describes."""
    if model_count < MIN_MODELS:
        raise ValueError(f"model_count must be at least {MIN_MODELS}, got {model_count}")

    models: list[Model] = []
    for index in range(model_count):
        domain, position = divmod(index, DOMAIN_SIZE)
        base = domain * DOMAIN_SIZE
        hub = model_name(base + HUB_POSITION)
        model = Model(name=model_name(index), domain=domain, position=position, materialized="table")

        if position == 0:
            model.materialized = "view"
            model.seed = SEED_NAMES[domain % len(SEED_NAMES)]
            model.tests = ["not_null", "unique"]
        elif position < HUB_POSITION:
            model.materialized = "view" if position == 1 else "table"
            model.parents = [model_name(index - 1)]
        elif position == HUB_POSITION:
            model.parents = [model_name(index - 1)]
            model.tests = ["not_null", "unique"]
        elif position == DOMAIN_SIZE - 1:
            # The join that links a domain to the one before it.
            other = model_name(base - DOMAIN_SIZE + HUB_POSITION) if domain > 0 else model_name(index - 2)
            model.parents = [hub, other]
        elif position == INCREMENTAL_POSITION and domain % 2 == 0:
            model.materialized = "incremental"
            model.parents = [hub]
            model.tests = ["not_null", "unique"]
        elif position % 4 == 3:
            model.parents = [model_name(index - 1)]
        else:
            model.parents = [hub]
            model.aggregate = position % 4 == 0

        if not model.tests and position % 3 == 0:
            model.tests = ["not_null"]
        models.append(model)

    return models


def _model_sql(model: Model) -> str:
    config = f"{{{{ config(materialized='{model.materialized}'"
    if model.materialized == "incremental":
        config += ", unique_key='id'"
    config += ") }}"

    if model.seed is not None:
        body = f"select id, grp, amount, ts\nfrom {{{{ ref('{model.seed}') }}}}"
    elif len(model.parents) == 2:
        first, second = model.parents
        body = (
            "select a.id, a.grp, a.amount + coalesce(b.amount, 0) as amount, a.ts\n"
            f"from {{{{ ref('{first}') }}}} as a\n"
            f"left join {{{{ ref('{second}') }}}} as b on a.id = b.id"
        )
    elif model.aggregate:
        body = (
            "select grp as id, grp, sum(amount) as amount, max(ts) as ts\n"
            f"from {{{{ ref('{model.parents[0]}') }}}}\ngroup by grp"
        )
    else:
        body = (
            f"select id, grp, amount * 1.01 + {model.position} as amount, ts\n"
            f"from {{{{ ref('{model.parents[0]}') }}}}"
        )
    if model.materialized == "incremental":
        body += (
            "\n{% if is_incremental() %}\n"
            "where ts > (select max(ts) from {{ this }})\n"
            "{% endif %}"
        )

    return f"{config}\n\n{body}\n"


def _schema_yml(models: list[Model]) -> str:
    lines = ["version: 2", "", "models:"]
    for model in models:
        lines.append(f"  - name: {model.name}")
        if model.tests:
            lines.append("    columns:")
            lines.append("      - name: id")
            lines.append("        data_tests:")
            lines.extend(f"          - {test}" for test in model.tests)

    return "\n".join(lines) + "\n"


def _seed_csv(seed_index: int) -> str:
    rows = ["id,grp,amount,ts"]
    for row in range(1, SEED_ROWS + 1):
        amount = ((row * 37 + seed_index * 11) % 1000) / 10
        day = 1 + (row + seed_index) % 28
        rows.append(f"{row},{row % 10},{amount:.1f},2024-01-{day:02d} 00:00:00")

    return "\n".join(rows) + "\n"


_DBT_PROJECT_YML = f"""\
name: {PROJECT_NAME}
version: "1.0.0"
config-version: 2
profile: {PROJECT_NAME}

model-paths: ["models"]
seed-paths: ["seeds"]
test-paths: ["tests"]
macro-paths: ["macros"]

models:
  {PROJECT_NAME}:
    +materialized: table
    # The hook is empty unless the model is listed in {FAIL_ENV_VAR}, and
    # dbt runs no statement for an empty hook.
    +pre-hook: "{{{{ bench_fail_if_requested() }}}}"

seeds:
  {PROJECT_NAME}:
    +column_types:
      id: integer
      grp: integer
      amount: double
      ts: timestamp
"""

_FAIL_MACRO = f"""\
{{#
  Benchmark switch: list model names in the environment variable
  {FAIL_ENV_VAR} (comma-separated) and those models fail at run time with a
  DuckDB error. Unset it to fix them.
#}}
{{% macro bench_fail_if_requested() %}}
  {{%- set broken = env_var('{FAIL_ENV_VAR}', '').split(',') | map('trim') | list -%}}
  {{%- if this.identifier in broken -%}}
    select error('benchmark failure: {{{{ this.identifier }}}} is listed in {FAIL_ENV_VAR}')
  {{%- endif -%}}
{{% endmacro %}}
"""

_SINGULAR_TEST = """\
-- Every hub keeps non-negative amounts.
{{% for hub in {hubs} %}}
select '{{{{ hub }}}}' as hub, id from {{{{ ref(hub) }}}} where amount < 0
{{% if not loop.last %}}union all{{% endif %}}
{{% endfor %}}
"""


def _profiles_yml(threads: int) -> str:
    return f"""\
{PROJECT_NAME}:
  target: dev
  outputs:
    dev:
      type: duckdb
      # Relative paths resolve against dbt's working directory, the project directory.
      path: "{{{{ env_var('DBT_DUCKDB_PATH', 'warehouse.duckdb') }}}}"
      threads: {threads}
"""


def generate_project(out_dir: Path, model_count: int, *, threads: int = 4) -> Path:
    """Write a synthetic dbt project of `model_count` models to `out_dir` and return it.

    Replaces `out_dir` if it exists. Also writes bench_graph.json: each
    model's parents, materialization and tests, for checks in benchmarks.
    """
    models = plan_models(model_count)
    out_dir = out_dir.resolve()
    shutil.rmtree(out_dir, ignore_errors=True)
    for folder in ("models", "seeds", "tests", "macros"):
        (out_dir / folder).mkdir(parents=True)

    (out_dir / "dbt_project.yml").write_text(_DBT_PROJECT_YML)
    (out_dir / "profiles.yml").write_text(_profiles_yml(threads))
    (out_dir / "macros" / "bench_failure.sql").write_text(_FAIL_MACRO)
    for seed_index, seed in enumerate(SEED_NAMES):
        (out_dir / "seeds" / f"{seed}.csv").write_text(_seed_csv(seed_index))

    domains: dict[int, list[Model]] = {}
    for model in models:
        domains.setdefault(model.domain, []).append(model)
    for domain, members in domains.items():
        folder = out_dir / "models" / f"domain_{domain:03d}"
        folder.mkdir()
        for model in members:
            (folder / f"{model.name}.sql").write_text(_model_sql(model))
        (folder / "_schema.yml").write_text(_schema_yml(members))

    hubs = [model.name for model in models if model.position == HUB_POSITION]
    (out_dir / "tests" / "assert_hub_amount_not_negative.sql").write_text(
        _SINGULAR_TEST.format(hubs=json.dumps(hubs))
    )
    graph = {
        model.name: {
            "parents": model.parents,
            "seed": model.seed,
            "materialized": model.materialized,
            "tests": model.tests,
        }
        for model in models
    }
    (out_dir / GRAPH_FILE).write_text(json.dumps(graph, indent=1))

    return out_dir


def descendants(project_dir: Path, model: str) -> set[str]:
    """Return the models downstream of `model`, from the project's bench_graph.json."""
    graph = json.loads((project_dir / GRAPH_FILE).read_text())
    children: dict[str, list[str]] = {}
    for name, node in graph.items():
        for parent in node["parents"]:
            children.setdefault(parent, []).append(name)

    found: set[str] = set()
    pending = [model]
    while pending:
        for child in children.get(pending.pop(), []):
            if child not in found:
                found.add(child)
                pending.append(child)

    return found


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path, help="project directory to create (replaced if it exists)")
    parser.add_argument(
        "--models", type=int, default=200, help=f"number of models, at least {MIN_MODELS} (default 200)"
    )
    parser.add_argument("--threads", type=int, default=4, help="dbt threads in profiles.yml (default 4)")
    options = parser.parse_args(argv)
    if options.models < MIN_MODELS:
        parser.error(f"--models must be at least {MIN_MODELS}, got {options.models}")

    project = generate_project(options.out_dir, options.models, threads=options.threads)
    failing = default_failing_model(options.models)
    graph = json.loads((project / GRAPH_FILE).read_text())
    test_count = sum(len(node["tests"]) for node in graph.values()) + 1
    print(f"wrote {project}: {options.models} models, {len(SEED_NAMES)} seeds, {test_count} data tests")
    print(
        f"default failing model: {failing} ({len(descendants(project, failing))} descendants); "
        f"break it with {FAIL_ENV_VAR}={failing}"
    )


if __name__ == "__main__":
    main()
