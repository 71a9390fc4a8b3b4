"""`config apply` gives each scheduled sync one EventBridge Scheduler schedule starting its state machine (I12)."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.slow


def schedule(env, name):
    return env.stack.client("scheduler").get_schedule(Name=name, GroupName="crmsync-syncs")


def test_each_scheduled_sync_gets_a_schedule_targeting_its_state_machine(sync_env):
    contacts = schedule(sync_env, "sf-contacts")
    assert contacts["ScheduleExpression"] == "cron(0/20 * * * ? *)"
    assert contacts["ScheduleExpressionTimezone"] == "Europe/Paris"
    assert contacts["Target"]["Arn"].endswith(":stateMachine:crmsync-import")
    assert contacts["Target"]["RoleArn"].endswith(":role/crmsync-scheduler")
    assert json.loads(contacts["Target"]["Input"]) == {"sync_id": "sf-contacts", "trigger": "schedule"}


def test_a_sync_whose_schedule_is_removed_loses_its_schedule(sync_env):
    unscheduled = sync_env.config.syncs[1].model_copy(update={"schedule": None})
    changes = sync_env.operator.apply(sync_env.config.model_copy(update={"syncs": [unscheduled]}))
    assert [(c.sync_id, c.action) for c in changes] == [("sf-subscriptions", "deleted")]
    with pytest.raises(sync_env.stack.client("scheduler").exceptions.ResourceNotFoundException):
        schedule(sync_env, "sf-subscriptions")


def test_a_scheduled_run_of_a_disabled_sync_is_refused_before_reading(sync_env):
    disabled = sync_env.config.syncs[0].model_copy(update={"enabled": False})
    sync_env.operator.apply(sync_env.config.model_copy(update={"syncs": [disabled]}))
    assert schedule(sync_env, "sf-contacts")["State"] == "DISABLED"
    sync_env.seed_contacts(2)
    summary = sync_env.run(trigger="schedule")
    assert summary["status"] == "FAILED"
    assert "disabled" in summary["error"]["message"]
    assert sync_env.profiles() == []
