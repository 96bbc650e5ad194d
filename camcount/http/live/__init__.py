"""The live API's logic: everything a live replica does between the hub and a
socket. The deployment (``serve_app/live.py``) follows the hub and moves
text in and out of Serve's routes; on its own port (``direct``) the
sockets are written here.

One module per concern; imports point one way, from the later in this list
to the earlier, never back:

- ``query``: filters, and the poll and resume query strings.
- ``encoding``: JSON, update objects, notices, WebSocket and SSE frames,
  long-poll bodies, close codes, ``PROTOCOL_VERSION``.
- ``messages``: what a client may send over a WebSocket.
- ``outbox``: per-client state (``Outbox``, ``Subscriptions``, ``Subscriber``).
- ``fanout``: a replica's ``Mirror`` of the hub and the ``Fanout`` to clients.
- ``session``: one WebSocket client's messages, read the same on every path.
- ``direct``: the streams served from a replica's own port (``DirectServer``),
  written straight to the sockets.

Rate limits, origins and error bodies serve the REST routes too, so they live
one level up (``camcount.http.limits``, ``.cors``, ``.errors``). Message
formats are documented in docs/api.md.
"""

from camcount.http.live.encoding import (
    PROTOCOL_VERSION,
    CloseCode,
    Encoded,
    Item,
    dumps,
    encode_update,
    error_message,
    frames,
    gap_message,
    message,
    poll_body,
    sse_frame,
    update_object,
)
from camcount.http.live.fanout import Fanout, Mirror
from camcount.http.live.messages import (
    AckMsg,
    AuthMsg,
    ClientMessage,
    PingMsg,
    SubscribeMsg,
    UnsubscribeMsg,
    parse_client_message,
)
from camcount.http.live.outbox import Outbox, Subscriber, Subscriptions, matches_any
from camcount.http.live.query import (
    KINDS,
    Filter,
    PollQuery,
    filter_from_query,
    int_param,
    make_filter,
    poll_query,
    resume_point,
)

__all__ = [
    "KINDS",
    "PROTOCOL_VERSION",
    "AckMsg",
    "AuthMsg",
    "ClientMessage",
    "CloseCode",
    "Encoded",
    "Fanout",
    "Filter",
    "Item",
    "Mirror",
    "Outbox",
    "PingMsg",
    "PollQuery",
    "SubscribeMsg",
    "Subscriber",
    "Subscriptions",
    "UnsubscribeMsg",
    "dumps",
    "encode_update",
    "error_message",
    "filter_from_query",
    "frames",
    "gap_message",
    "int_param",
    "make_filter",
    "matches_any",
    "message",
    "parse_client_message",
    "poll_body",
    "poll_query",
    "resume_point",
    "sse_frame",
    "update_object",
]
