"""Where cameras go on a cluster: the least loaded node their placement
allows (camcount.placement), one scenario per row."""

from __future__ import annotations

import pytest

from camcount.config import CameraPlacement
from camcount.placement import CameraLoad, Node, least_loaded

HEAD = Node("head", {"CPU": 1.0})
GPU = Node("gpu", {"CPU": 4.0, "detector": 2.0, "site-a": 10.0}, {"site": "north"})
PLAIN = Node("plain", {"CPU": 2.0})
NODES = [HEAD, GPU, PLAIN]
ANY = CameraPlacement()


@pytest.mark.parametrize(
    ("placement", "cameras_on", "avoid", "expected"),
    [
        # an empty cluster: the node with the most CPUs
        (ANY, {}, (), "gpu"),
        # load is cameras per CPU: 2 on 4 CPUs is less than 1 on 1
        (ANY, {"gpu": 2, "head": 1}, (), "plain"),
        (ANY, {"gpu": 4, "plain": 2, "head": 1}, (), "gpu"),
        # equal load: the node with more CPUs
        (ANY, {"head": 5, "gpu": 2, "plain": 1}, (), "gpu"),
        # a resource only one node has binds the camera to it, however loaded
        (CameraPlacement(resources={"site-a": 1}), {"gpu": 9}, (), "gpu"),
        # a label likewise
        (CameraPlacement(labels={"site": "north"}), {"gpu": 9}, (), "gpu"),
        # more of a resource than any node has: no node
        (CameraPlacement(resources={"site-a": 11}), {}, (), None),
        # a label no node carries: no node (the camera waits for one)
        (CameraPlacement(labels={"site": "south"}), {}, (), None),
        # a lost node is passed over when another qualifies...
        (ANY, {}, ("gpu",), "plain"),
        # ...and taken when it alone qualifies
        (CameraPlacement(resources={"site-a": 1}), {}, ("gpu",), "gpu"),
    ],
)
def test_the_least_loaded_node_that_qualifies(placement, cameras_on, avoid, expected):
    assert least_loaded(NODES, placement, cameras_on, avoid) == expected


def test_a_node_without_cpus_takes_no_camera():
    assert least_loaded([Node("tiny", {"CPU": 0.0})], ANY, {}) is None


def test_cameras_spread_and_one_added_later_lands_on_the_least_loaded_node():
    load = CameraLoad()
    first = [load.place(f"cam{i}", ANY, NODES) for i in range(7)]
    # 7 cameras over 7 CPUs: one per CPU on each node.
    assert sorted(first) == sorted(["gpu"] * 4 + ["plain"] * 2 + ["head"])
    load.forget("cam0")  # a gpu camera removed: the gpu node is least loaded now
    assert load.place("late", ANY, NODES) == "gpu"


def test_a_lost_nodes_cameras_are_placed_again_on_the_nodes_left():
    load = CameraLoad()
    for i in range(4):
        load.place(f"cam{i}", ANY, NODES)
    on_plain = [c for c, n in load.placed().items() if n == "plain"]
    assert on_plain
    left = [HEAD, GPU]
    for camera_id in on_plain:
        assert load.place(camera_id, ANY, left, lost=True) in {"head", "gpu"}
    assert "plain" not in load.placed().values()


def test_a_lost_camera_leaves_its_node_while_the_cluster_still_reports_it_alive():
    load = CameraLoad()
    assert load.place("cam", ANY, NODES) == "gpu"
    assert load.place("cam", ANY, NODES, lost=True) == "plain"
    # a camera placed again without a loss stays where the rule says
    assert load.place("cam", ANY, NODES) == "gpu"


def test_cameras_on_a_node_no_longer_alive_count_nowhere():
    load = CameraLoad()
    for i in range(3):
        load.place(f"cam{i}", CameraPlacement(resources={"site-a": 1}), NODES)
    # gpu is gone: its three cameras do not make the plain node look loaded
    assert load.place("new", ANY, [HEAD, PLAIN]) == "plain"


def test_a_camera_found_running_counts_where_it_runs():
    load = CameraLoad()
    load.record("adopted", "plain")  # outlived a controller restart there
    load.record("unknown", None)  # lost before it said where it ran
    assert load.placed() == {"adopted": "plain"}
    # plain holds one camera on 2 CPUs, gpu none on 4: gpu first, then head
    assert load.place("a", ANY, NODES) == "gpu"
    assert load.place("b", ANY, NODES) == "head"
