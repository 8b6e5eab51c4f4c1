"""Worker roles: what each discovers and runs, its consumer group, and the changelogs every role shares."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from base import topics
from base.exceptions import SettingsError
from base.settings import PROJECT_ROOT, WORKER_ROLES, Settings

_DESCRIBE = """
import json
from streams.app import app
app.discover()
print(json.dumps({
    "group": app.conf.id,
    "agents": sorted(name.rsplit(".", 1)[1] for name in app.agents),
    "tables": sorted(app.tables),
    "changelogs": sorted(t.changelog_topic.get_topic_name() for t in app.tables.values()),
    "timers": sorted(task.__name__ for task in app._app_tasks),
}))
"""


def describe(role: str) -> dict[str, list[str] | str]:
    """What a worker of ``role`` registers, read in a fresh interpreter (the app is built at import)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WHATSUP_")}
    env.update(WHATSUP_APP_ID="fleet-a", WHATSUP_WORKER_ROLE=role)
    done = subprocess.run(
        [sys.executable, "-c", _DESCRIBE],
        env=env,
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    described: dict[str, list[str] | str] = json.loads(done.stdout.splitlines()[-1])
    return described


@pytest.fixture(scope="module")
def roles() -> dict[str, dict[str, list[str] | str]]:
    return {role: describe(role) for role in WORKER_ROLES}


def test_the_clean_role_runs_the_clean_stage_alone_in_a_group_of_its_own(roles: dict[str, dict]) -> None:
    clean = roles["clean"]
    assert clean["group"] == "fleet-a-clean"
    assert clean["agents"] == ["clean_pings"]
    assert clean["tables"] == ["driver_ping_state"]
    assert "watch_silent_drivers" not in clean["timers"]


def test_the_deliveries_role_runs_everything_downstream_of_the_clean_stage(roles: dict[str, dict]) -> None:
    deliveries, everything = roles["deliveries"], roles["all"]
    assert deliveries["group"] == "fleet-a-deliveries"
    assert "clean_pings" not in deliveries["agents"]
    assert {"track_drivers", "fold_cell_speeds", "notify_alerts"} <= set(deliveries["agents"])
    assert "watch_silent_drivers" in deliveries["timers"]
    # The two roles together run exactly what one worker of every agent runs.
    assert sorted(roles["clean"]["agents"] + deliveries["agents"]) == everything["agents"]
    assert sorted(roles["clean"]["tables"] + deliveries["tables"]) == everything["tables"]


def test_every_role_reads_and_writes_the_changelogs_of_the_deployment(roles: dict[str, dict]) -> None:
    assert roles["all"]["group"] == "fleet-a"  # the all-in-one worker keeps Faust's group, the app id
    expected = {f"fleet-a-{table}-changelog" for table in roles["all"]["tables"]}
    assert set(roles["all"]["changelogs"]) == expected
    assert set(roles["clean"]["changelogs"]) | set(roles["deliveries"]["changelogs"]) == expected


def test_group_roles_name_each_split_roles_group() -> None:
    assert topics.worker_group_role("all") == "worker"
    assert topics.consumer_group(topics.worker_group_role("clean"), "w") == "w-clean"
    assert topics.consumer_group(topics.worker_group_role("deliveries"), "w") == "w-deliveries"


def test_an_unknown_role_is_refused_naming_the_setting() -> None:
    with pytest.raises(SettingsError, match="WHATSUP_WORKER_ROLE must be one of all, clean, deliveries"):
        Settings.from_env({"WHATSUP_WORKER_ROLE": "tracker"})
