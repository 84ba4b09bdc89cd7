"""Re-execute → From failure in the webserver UI, driven in Debian's Chromium by Playwright."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import dagster as dg
import pytest
from playwright.sync_api import sync_playwright

from tests.servers import LAUNCH_RUN, graphql, launched_run_id, running_webserver
from tests.support import SampleProject, built_nodes, outcome_of

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SCREENSHOTS = Path(__file__).resolve().parent.parent / "test-artifacts"
BROKEN_FCT_ORDERS = "select no_such_column from {{ ref('stg_orders') }}\n"
# Flags that keep Chromium off the network: this machine allows loopback only.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def test_ui_reexecute_from_failure(
    instance: dg.DagsterInstance, project: SampleProject, tmp_path: Path
) -> None:
    assert Path(CHROMIUM).exists(), (
        "Chromium is missing: run `make browser` (apt-get install chromium)"
    )
    model = project.path / "models/marts/fct_orders.sql"
    original = model.read_text()
    env = {**os.environ, "DBT_RERUN_PROJECT_DIR": str(project.path)}
    selector = {
        "repositoryLocationName": "dbt_rerun_sample",
        "repositoryName": "__repository__",
        "jobName": "jaffle_nightly",
    }
    SCREENSHOTS.mkdir(exist_ok=True)

    with running_webserver(env, tmp_path / "webserver.log") as url:
        model.write_text(BROKEN_FCT_ORDERS)
        launch = graphql(
            url, LAUNCH_RUN, {"executionParams": {"selector": selector, "runConfigData": {}}}
        )
        failed_id = launched_run_id(launch["launchRun"])
        while not instance.get_run_by_id(failed_id).is_finished:
            time.sleep(0.5)
        model.write_text(original)
        project.new_builds()

        base_url = url.removesuffix("/graphql")
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 900})
                page.goto(f"{base_url}/runs/{failed_id}")
                skip = page.get_by_role("button", name="Skip")  # the first-visit newsletter dialog
                skip.click(timeout=30_000)
                reexecute = page.get_by_role("button", name="Re-execute all (*)")
                reexecute.wait_for()
                box = reexecute.bounding_box()
                assert box is not None
                # The menu opens from the arrow button right of "Re-execute all (*)".
                page.mouse.click(box["x"] + box["width"] + 12, box["y"] + box["height"] / 2)
                page.get_by_role("menuitem", name="From failure").click()
                page.wait_for_url(lambda address: failed_id not in address, timeout=30_000)
                rerun_id = page.url.rstrip("/").rsplit("/", 1)[-1]
                deadline = time.monotonic() + 120
                while not instance.get_run_by_id(rerun_id).is_finished:
                    assert time.monotonic() < deadline, "the rerun did not finish within 120 s"
                    time.sleep(0.5)
                page.reload()
                page.get_by_text("RUN_SUCCESS").first.wait_for(timeout=60_000)
                page.screenshot(path=str(SCREENSHOTS / "ui_reexecute_from_failure.png"))
            finally:
                browser.close()

    rerun = outcome_of(instance, rerun_id)
    rebuilt = built_nodes(project.new_builds())

    assert rerun.parent_run_id == failed_id
    assert rerun.success
    assert rerun.step_status == {"step_2_dbt_run": "SUCCESS", "step_3_dbt_test": "SUCCESS"}
    assert rerun.rerun_tags() == {
        "dbt_rerun/rerun_mode": "from_failure",
        "dbt_rerun/resumed_from_step": "step_2_dbt_run",
    }
    assert rerun.tags["dagster/is_resume_retry"] == "true"
    assert "fct_orders" in rebuilt
    assert "stg_orders" not in rebuilt
    assert (SCREENSHOTS / "ui_reexecute_from_failure.png").stat().st_size > 10_000


pytestmark = pytest.mark.browser
