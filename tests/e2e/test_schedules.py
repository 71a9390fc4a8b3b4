"""`config apply` gives each scheduled sync one EventBridge Scheduler schedule starting its state machine (I12)."""

from __future__ import annotations

import json

import pytest

from crmsync.errors import SyncNotFound

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


def without(config, *sync_ids):
    return config.model_copy(update={"syncs": [s for s in config.syncs if s.id not in sync_ids]})


def test_a_sync_dropped_from_the_file_loses_its_definition_and_schedule_and_keeps_its_data(sync_env):
    sync_env.seed_contacts(2)
    assert sync_env.run()["created"] == 2
    option, mark = sync_env.operator.watermark("sf-contacts")
    report = sync_env.operator.apply_config(without(sync_env.config, "sf-contacts"))
    assert report.plan.removed == ["sf-contacts"]
    assert [(c.sync_id, c.action) for c in report.removed] == [("sf-contacts", "removed")]
    with pytest.raises(sync_env.stack.client("scheduler").exceptions.ResourceNotFoundException):
        schedule(sync_env, "sf-contacts")
    with pytest.raises(SyncNotFound):
        sync_env.operator.start("sf-contacts")
    assert len(sync_env.profiles()) == 2
    assert sync_env.container.watermarks.get(option) == mark
    assert schedule(sync_env, "sf-subscriptions")["State"] == "ENABLED"


def test_a_dry_run_plans_added_changed_and_removed_and_changes_nothing(sync_env):
    contacts, subscriptions, *rest = sync_env.config.syncs
    edited = subscriptions.model_copy(update={"schedule": "rate(2 hours)"})
    added = contacts.model_copy(
        update={"id": "sf-contacts-copy", "watermark": contacts.watermark.model_copy(update={"option": "COPY"})}
    )
    config = sync_env.config.model_copy(update={"syncs": [edited, *rest, added]})
    report = sync_env.operator.apply_config(config, dry_run=True)
    plan = report.plan
    assert (plan.added, plan.changed, plan.removed) == (
        ["sf-contacts-copy"],
        ["sf-subscriptions"],
        ["sf-contacts"],
    )
    assert sorted(plan.unchanged) == sorted(s.id for s in rest)
    assert (report.schedules, report.removed) == ([], [])
    assert schedule(sync_env, "sf-contacts")["State"] == "ENABLED"
    assert schedule(sync_env, "sf-subscriptions")["ScheduleExpression"] != "rate(2 hours)"
    assert sync_env.container.definitions.sync("sf-contacts").sync == contacts
    with pytest.raises(SyncNotFound):
        sync_env.container.definitions.sync("sf-contacts-copy")


def test_a_removed_sync_with_a_run_in_flight_waits_for_it_with_its_schedule_disabled(sync_env):
    runs = sync_env.container.runs
    runs.acquire("sf-contacts", "sf-contacts-manual-in-flight", 600)
    report = sync_env.operator.apply_config(without(sync_env.config, "sf-contacts"))
    assert "run sf-contacts-manual-in-flight is in flight" in report.waiting["sf-contacts"]
    assert [(c.sync_id, c.action) for c in report.removed] == [("sf-contacts", "disabled")]
    assert schedule(sync_env, "sf-contacts")["State"] == "DISABLED"
    assert sync_env.container.definitions.sync("sf-contacts").sync.id == "sf-contacts"  # the run still reads it

    runs.release("sf-contacts", "sf-contacts-manual-in-flight")
    again = sync_env.operator.apply_config(without(sync_env.config, "sf-contacts"))
    assert (again.waiting, [(c.sync_id, c.action) for c in again.removed]) == ({}, [("sf-contacts", "removed")])
    with pytest.raises(SyncNotFound):
        sync_env.container.definitions.sync("sf-contacts")


def test_a_schedule_whose_run_cannot_start_goes_to_the_stacks_dead_letter_queue(sync_env):
    target = schedule(sync_env, "sf-contacts")["Target"]
    assert target["DeadLetterConfig"]["Arn"].endswith(":crmsync-schedules-dlq")
    queue = sync_env.stack.client("sqs").get_queue_url(QueueName="crmsync-schedules-dlq")["QueueUrl"]
    assert queue.endswith("/crmsync-schedules-dlq")


def test_the_connection_of_a_waiting_sync_stays_until_the_sync_goes(sync_env):
    dynamics = [s.id for s in sync_env.config.syncs if s.connection == "dyn-prod"]
    config = without(sync_env.config, *dynamics).model_copy(
        update={"connections": [c for c in sync_env.config.connections if c.name != "dyn-prod"]}
    )
    sync_env.container.runs.acquire("dyn-contacts", "dyn-contacts-manual-in-flight", 600)
    report = sync_env.operator.apply_config(config)
    assert list(report.waiting) == ["dyn-contacts"]
    assert report.plan.connections_removed == []
    assert sync_env.container.definitions.sync("dyn-contacts").connection.name == "dyn-prod"

    sync_env.container.runs.release("dyn-contacts", "dyn-contacts-manual-in-flight")
    assert sync_env.operator.apply_config(config).plan.connections_removed == ["dyn-prod"]
