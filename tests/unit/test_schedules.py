"""When a schedule fires next (`crmsync status`): EventBridge Scheduler's cron, in the schedule's zone."""

from datetime import UTC, datetime, timedelta

from crmsync.domain.schedules import next_run, rate_interval

MONDAY = datetime(2026, 12, 7, 3, 25, 10, tzinfo=UTC)


def test_every_20_minutes_fires_at_the_next_multiple_of_20():
    assert next_run("cron(0/20 * * * ? *)", MONDAY) == datetime(2026, 12, 7, 3, 40, tzinfo=UTC)


def test_weekdays_at_6_30_in_paris_are_5_30_utc_in_winter():
    assert next_run("cron(30 6 ? * MON-FRI *)", MONDAY, "Europe/Paris") == datetime(2026, 12, 7, 5, 30, tzinfo=UTC)


def test_a_day_name_lands_on_that_weekday():
    assert next_run("cron(0 8 ? * SUN *)", MONDAY) == datetime(2026, 12, 13, 8, 0, tzinfo=UTC)


def test_the_first_of_the_month_rolls_into_the_next_year():
    assert next_run("cron(0 2 1 * ? *)", MONDAY) == datetime(2027, 1, 1, 2, 0, tzinfo=UTC)


def test_the_time_itself_is_not_next():
    assert next_run("cron(40 3 * * ? *)", datetime(2026, 12, 7, 3, 40, tzinfo=UTC)) == datetime(
        2026, 12, 8, 3, 40, tzinfo=UTC
    )


def test_last_day_and_nth_weekday_give_no_answer_rather_than_a_wrong_one():
    assert next_run("cron(0 2 L * ? *)", MONDAY) is None
    assert next_run("cron(0 2 ? * 2#1 *)", MONDAY) is None


def test_rate_schedules_have_an_interval_and_no_cron_answer():
    assert rate_interval("rate(20 minutes)") == timedelta(minutes=20)
    assert rate_interval("rate(1 day)") == timedelta(days=1)
    assert next_run("rate(20 minutes)", MONDAY) is None
