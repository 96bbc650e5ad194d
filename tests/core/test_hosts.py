"""The plan of which camera process holds which camera: hosts fill before a
new one starts, keys never mix, a lost host takes no camera and ends
empty, and any sequence of placements and releases keeps the limits."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from camcount.config import DEFAULT_CAMERAS_PER_PROCESS, AppConfig, CameraConfig, parse_config
from camcount.errors import ConfigError
from camcount.hosts import HostPlan, PlacementError, placement_key


def test_hosts_fill_before_a_new_one_starts():
    plan = HostPlan(3)
    placed = [plan.place(f"c{i}", "north") for i in range(7)]
    assert [new for _, new in placed] == [True, False, False, True, False, False, True]
    assert sorted(len(c) for c in plan.hosts().values()) == [1, 3, 3]


@pytest.mark.parametrize(
    ("sites", "hosts"),
    [
        # one site: one host of four
        (["a", "a", "a", "a"], 1),
        # two sites never share a host, even with room
        (["a", "b", "a", "b"], 2),
        # a site beyond the capacity opens a second host of its own
        (["a", "a", "a", "a", "a", "b"], 3),
    ],
)
def test_a_host_holds_one_placement_key(sites, hosts):
    plan = HostPlan(4)
    for i, site in enumerate(sites):
        plan.place(f"c{i}", site)
    assert len(plan.hosts()) == hosts
    for cameras in plan.hosts().values():
        assert len({sites[int(c[1:])] for c in cameras}) == 1


def test_the_fullest_host_with_room_takes_the_next_camera():
    plan = HostPlan(4)
    first, _ = plan.place("a", "k")
    plan.place("b", "k")
    plan.close(first)  # a and b's host is lost
    second, new = plan.place("c", "k")
    assert new and second != first
    plan.place("d", "k")
    assert plan.release("a") is None  # b is still in it
    assert plan.release("b") == first  # empty now: its process ends
    third, new = plan.place("e", "k")
    assert (third, new) == (second, False)


def test_a_removed_camera_leaves_its_neighbours_where_they_are():
    plan = HostPlan(8)
    for c in "abcd":
        plan.place(c, "")
    host = plan.host_of("a")
    assert plan.release("c") is None
    assert plan.cameras_of(host) == {"a", "b", "d"}
    assert plan.host_of("c") is None


def test_the_spare_takes_the_key_of_the_camera_it_takes_over():
    plan = HostPlan(2)
    spare = plan.new_host("")
    plan.take(spare, "x", "south")
    assert plan.place("y", "south") == (spare, False)


@pytest.mark.parametrize(
    ("case", "message"),
    [
        # a camera in two hosts at once
        ("twice", "is in host"),
        # a full host
        ("full", "cannot take"),
        # a closed host
        ("closed", "cannot take"),
        # a host of another key
        ("key", "cannot take"),
    ],
)
def test_what_the_plan_refuses(case, message):
    plan = HostPlan(1)
    host, _ = plan.place("a", "k")
    with pytest.raises(PlacementError, match=message):
        if case == "twice":
            plan.place("a", "k")
        elif case == "full":
            plan.take(host, "b", "k")
        elif case == "closed":
            plan.release("a")
            other = plan.new_host("k")
            plan.close(other)
            plan.take(other, "b", "k")
        else:
            wide = HostPlan(2)
            h, _ = wide.place("a", "k")
            wide.take(h, "b", "other")


def test_a_host_holds_at_least_one_camera():
    with pytest.raises(PlacementError, match="capacity 0"):
        HostPlan(0)


@settings(max_examples=150, deadline=None)
@given(
    capacity=st.integers(1, 5),
    steps=st.lists(
        st.tuples(st.sampled_from(["place", "release", "close"]), st.integers(0, 11)),
        max_size=60,
    ),
)
def test_any_sequence_keeps_every_camera_in_one_host_within_capacity(capacity, steps):
    plan = HostPlan(capacity)
    keys = {i: "ab"[i % 2] for i in range(12)}
    placed: set[int] = set()
    for op, i in steps:
        if op == "place" and i not in placed:
            host, _ = plan.place(f"c{i}", keys[i])
            assert not plan.is_closed(host)
            placed.add(i)
        elif op == "release":
            plan.release(f"c{i}")
            placed.discard(i)
        elif op == "close" and i in placed:
            plan.close(plan.host_of(f"c{i}") or "")
        hosts = plan.hosts()
        everywhere = [c for cams in hosts.values() for c in cams]
        assert sorted(everywhere) == sorted(f"c{j}" for j in placed)
        assert all(0 < len(cams) <= capacity for cams in hosts.values())
        for cams in hosts.values():
            assert len({keys[int(c[1:])] for c in cams}) == 1


def test_the_knob_in_the_config():
    assert AppConfig().pipeline.cameras_per_process == DEFAULT_CAMERAS_PER_PROCESS
    assert parse_config("pipeline: {cameras_per_process: 32}").pipeline.cameras_per_process == 32
    with pytest.raises(ConfigError, match=r"line 1: pipeline.cameras_per_process"):
        parse_config("pipeline: {cameras_per_process: 0}")


def test_hosts_found_after_a_restart_are_entered_as_they_are():
    plan = HostPlan(2)
    roomy = plan.found(["a"], "k")
    crowded = plan.found(["b", "c", "d"], "k")  # run with a larger capacity
    assert plan.host_of("a") == roomy and plan.cameras_of(crowded) == {"b", "c", "d"}
    assert plan.is_closed(crowded) and not plan.is_closed(roomy)
    assert plan.place("e", "k") == (roomy, False)
    with pytest.raises(PlacementError, match="in other hosts"):
        plan.found(["a"], "k")


def _camera(site: str, placement: dict[str, object] | None = None) -> CameraConfig:
    return CameraConfig(id="c", source="clip.mp4", site=site, placement=placement or {})


@pytest.mark.parametrize(
    ("a", "b", "share"),
    [
        # same site, no constraints: one process may hold both
        (_camera("north"), _camera("north"), True),
        # another site never shares
        (_camera("north"), _camera("south"), False),
        # same site, but one is bound to nodes with a resource: it may not
        # run where the other's process went
        (_camera("north"), _camera("north", {"resources": {"site-north": 0.001}}), False),
        # same site, labels that differ
        (
            _camera("north", {"labels": {"zone": "a"}}),
            _camera("north", {"labels": {"zone": "b"}}),
            False,
        ),
        # the same constraints written in another order share
        (
            _camera("north", {"labels": {"zone": "a", "rack": "1"}}),
            _camera("north", {"labels": {"rack": "1", "zone": "a"}}),
            True,
        ),
    ],
)
def test_cameras_share_a_process_only_with_the_same_site_and_placement(a, b, share):
    assert (placement_key(a) == placement_key(b)) is share
    plan = HostPlan(4)
    first, _ = plan.place("a", placement_key(a))
    second, new = plan.place("b", placement_key(b))
    assert (second == first) is share and new is not share


def test_a_lost_camera_passes_over_the_hosts_it_is_told_to_avoid():
    plan = HostPlan(4)
    on_lost_node, _ = plan.place("a", "k")
    plan.place("b", "k")
    plan.release("a")  # lost with its node, as b's host may be
    elsewhere, new = plan.place("a", "k", avoid={on_lost_node})
    assert new and elsewhere != on_lost_node
    # a camera not told to avoid it still fills it
    assert plan.place("c", "k") == (on_lost_node, False)
