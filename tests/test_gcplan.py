"""gc's plan for the device folders (SPEC 8.1, 8.2): snapshots past retention go, tombstone
batches go once every active device's head has seen them and they are older than the
grace period, a retired device keeps its last snapshot for the grace period and then
its whole folder goes; a device missing from the registry counts as active."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from dropbeard.core.gcplan import DeviceInput, plan_retention
from dropbeard.core.retention import Policy
from dropbeard.core.sweep import Listed
from dropbeard.core.timestamps import parse_snapshot_id

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)
POLICY = Policy(
    all=timedelta(hours=1),
    hourly=timedelta(0),
    daily=timedelta(days=3),
    weekly=timedelta(0),
    grace=timedelta(hours=2),
)


def snaps(device: str, *ids: str) -> dict[str, Listed]:
    return {
        i: Listed(f"devices/{device}/snapshots/{i}.json", 100, parse_snapshot_id(i)) for i in ids
    }


def batches(device: str, **ages: float) -> dict[int, Listed]:
    """seq (as `s3`) -> a batch written `hours` ago."""
    return {
        int(s[1:]): Listed(f"devices/{device}/tombstones/{s}", 10, NOW - timedelta(hours=h))
        for s, h in ages.items()
    }


def test_snapshots_past_retention_go_and_the_policy_keeps_the_rest() -> None:
    ids = ["20260225T100000Z", "20260225T200000Z", "20260228T090000Z", "20260301T113000Z"]
    plan = plan_retention({"a": DeviceInput(snaps("a", *ids), current=ids[-1])}, NOW, POLICY)
    # the newest (current, and younger than `all`), the newest of each of the last 3 days
    assert plan.kept["a"] == {"20260301T113000Z", "20260228T090000Z"}
    assert [o.key for o in plan.snapshots] == [
        "devices/a/snapshots/20260225T100000Z.json",
        "devices/a/snapshots/20260225T200000Z.json",
    ]


def test_a_tombstone_batch_goes_once_every_active_device_has_seen_it_and_it_is_old() -> None:
    devices = {
        "a": DeviceInput(tombstones=batches("a", s1=5, s2=5, s3=1), has_head=True),
        "b": DeviceInput(has_head=True, seen={"a": 3}),
        "c": DeviceInput(has_head=True, seen={"a": 2}),
    }
    plan = plan_retention(devices, NOW, POLICY)
    assert [o.key for o in plan.tombstones] == [
        "devices/a/tombstones/s1",
        "devices/a/tombstones/s2",
    ]
    # c has not processed anything of a's yet: nothing goes
    devices["c"] = DeviceInput(has_head=True)
    assert plan_retention(devices, NOW, POLICY).tombstones == []
    # a registered device without a head holds them back too; a retired one does not
    devices["c"] = DeviceInput(status="active")
    assert plan_retention(devices, NOW, POLICY).tombstones == []
    devices["c"] = DeviceInput(status="retired", retired_at=NOW)
    assert len(plan_retention(devices, NOW, POLICY).tombstones) == 2


def test_a_lone_device_s_batches_go_once_older_than_the_grace_period() -> None:
    plan = plan_retention({"a": DeviceInput(tombstones=batches("a", s1=3, s2=1))}, NOW, POLICY)
    assert [o.key for o in plan.tombstones] == ["devices/a/tombstones/s1"]


def test_a_retired_device_keeps_its_last_snapshot_then_its_folder_goes() -> None:
    ids = ["20260201T000000Z", "20260202T000000Z"]
    head = Listed("devices/old/head.json", 50, NOW - timedelta(days=20))
    retired = DeviceInput(
        snaps("old", *ids), batches("old", s1=500), [head], has_head=True,
        current=ids[-1], status="retired", retired_at=NOW - timedelta(hours=1),
    )  # fmt: skip
    plan = plan_retention({"old": retired}, NOW, POLICY)
    assert plan.kept["old"] == {ids[-1]}
    assert [o.key for o in plan.snapshots] == [f"devices/old/snapshots/{ids[0]}.json"]
    assert plan.tombstones == [] and plan.retired == []
    later = DeviceInput(
        snaps("old", *ids), batches("old", s1=500), [head], has_head=True,
        current=ids[-1], status="retired", retired_at=NOW - timedelta(hours=3),
    )  # fmt: skip
    plan = plan_retention({"old": later}, NOW, POLICY)
    assert plan.retired_devices == ["old"]
    assert len(plan.retired) == 4 and "old" not in plan.kept
    assert plan.snapshots == []


def test_a_device_missing_from_the_registry_counts_as_active() -> None:
    ids = ["20260101T000000Z", "20260301T080000Z"]
    devices = {
        "a": DeviceInput(tombstones=batches("a", s1=10), has_head=True),
        "new": DeviceInput(snaps("new", *ids), has_head=True, current=ids[-1], status=None),
    }
    plan = plan_retention(devices, NOW, POLICY)
    assert plan.kept["new"] == {ids[-1]}  # its snapshots follow the policy
    assert plan.tombstones == []  # and it has not seen a's deletes yet
