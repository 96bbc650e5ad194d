"""Parts that outlive a restart of the controller that made them.

Ray ends the actors an actor made when their maker dies. A controller
that Ray restarts would then find no camera, shard or hub left: every
camera a new process (seconds each, a minute for 32 cameras on two
cores) and everything counted since the last checkpoint made again from
scratch. So the controller makes its parts detached, named under a
prefix of its own actor id (the same across its restarts); the restarted
controller finds them by that prefix and rolls them back in place, as
after any other loss.

A detached actor is not ended by Ray when its maker is gone for good (the
pipeline stopped, the driver ended): each part watches the controller
and ends itself then, so none is left behind on the cluster.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import ray
from ray.exceptions import ActorDiedError

log = logging.getLogger("camcount.lifetime")

PREFIX = "camcount-part-"
#: Parts are named in a namespace of their own: a job's default namespace
#: is anonymous, and Ray warns on the driver's output about every detached
#: actor made in one.
NAMESPACE = "camcount-parts"
#: How often a part asks whether its controller is still there. A
#: controller Ray is restarting holds the question until it is back.
OWNER_CHECK_S = 2.0


def run_prefix(owner_id: str) -> str:
    """The names of one controller's parts start with this."""
    return f"{PREFIX}{owner_id}-"


def detached(owner_id: str, kind: str) -> dict[str, Any]:
    """Actor options for a part of controller ``owner_id``. The name ends
    with the time it was made, so of two parts of the same kind (one
    replaced, its kill still on its way) the newer is known."""
    return {
        "name": f"{run_prefix(owner_id)}{kind}-{time.time_ns()}",
        "namespace": NAMESPACE,
        "lifetime": "detached",
    }


def parts_of(owner_id: str) -> dict[str, list[Any]]:
    """The parts of controller ``owner_id`` still alive, by kind, the newest
    first. A name can outlive its actor for a moment; those are left out."""
    found: dict[str, list[tuple[int, Any]]] = {}
    prefix = run_prefix(owner_id)
    for entry in ray.util.list_named_actors(all_namespaces=True):
        name = entry["name"]
        if entry["namespace"] != NAMESPACE or not name.startswith(prefix):
            continue
        kind, _, made = name[len(prefix) :].rpartition("-")
        try:
            handle = ray.get_actor(name, namespace=NAMESPACE)
        except ValueError:
            continue
        found.setdefault(kind, []).append((int(made), handle))
    return {kind: [h for _, h in sorted(hs, key=lambda p: -p[0])] for kind, hs in found.items()}


def end_with(owner: Any) -> None:
    """End this actor once ``owner`` (an actor with a ``ping`` method) is
    gone for good. A thread, not a task of the actor's event loop, so a
    busy loop never delays it and the actor's own methods never see it."""
    if owner is None:
        return
    threading.Thread(
        target=_watch_owner, args=(owner,), daemon=True, name="camcount-owner-watch"
    ).start()


def _watch_owner(owner: Any) -> None:
    # While Ray restarts the owner a call fails with ActorUnavailableError
    # (or waits for it); ActorDiedError means it will not come back, and a
    # second one a check later makes sure. (Ray's own retries of the call
    # would say so on the driver's output, every time.)
    died = 0
    while died < 2:
        time.sleep(OWNER_CHECK_S)
        try:
            # A future, not ray.get: Ray warns of any ray.get in an async
            # actor, whichever thread makes it.
            owner.ping.remote().future().result()
            died = 0
        except ActorDiedError:
            died += 1
        except Exception as exc:  # restarting, or a glitch: ask again
            log.debug("owner check failed: %r", exc)
            died = 0
    log.warning("the controller is gone for good: this part ends")
    ray.kill(ray.get_runtime_context().current_actor, no_restart=True)
