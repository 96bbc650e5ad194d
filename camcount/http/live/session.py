"""One WebSocket client's conversation with a replica, whatever carries it.

Serve's relayed ``/live/ws`` and a replica's own port (``direct``) read the
same messages and answer the same way: both hand each client text frame to
``Session.receive`` and write what lands in the client's outbox. So the
two transports cannot drift in what they accept, refuse or resume.

Invariants kept here:

- A malformed or refused message gets an ``error`` reply and changes
  nothing; the connection stays usable.
- ``after`` (resume) applies to a connection's first subscription only:
  attaching twice could send an update twice.
- ``ack`` is free of the rate limit (a client is asked to send it).
"""

from __future__ import annotations

from camcount.errors import RequestError
from camcount.http.limits import RateLimiter
from camcount.http.live.encoding import error_message, message
from camcount.http.live.fanout import Fanout
from camcount.http.live.messages import (
    AckMsg,
    AuthMsg,
    ClientMessage,
    PingMsg,
    SubscribeMsg,
    UnsubscribeMsg,
    parse_client_message,
)
from camcount.http.live.outbox import Subscriber, Subscriptions

#: Refused (rate-limited) messages in a row before the connection is closed.
MAX_REFUSED_IN_ROW = 100


class Session:
    """A connection's subscriptions, resume point and message rate."""

    def __init__(
        self, fanout: Fanout, sub: Subscriber, limiter: RateLimiter, after: int | None
    ) -> None:
        self.fanout = fanout
        self.sub = sub
        self.limiter = limiter
        self.after = after
        self.subs = Subscriptions()
        self.attached = False
        self._refused_in_row = 0

    def receive(self, text: str | None) -> bool:
        """One client frame (None for a binary one); its reply goes to the
        outbox. False when the client sent too many refused messages in a
        row and must be closed (rate limited)."""
        ref: str | None = None
        try:
            if text is None:
                raise RequestError("bad_message", "send JSON text frames, not binary")
            parsed = parse_client_message(text)
            ref = getattr(parsed, "id", None)
            if isinstance(parsed, AckMsg):
                self.sub.outbox.ack(parsed.seq)
                return True
            wait_s = self.limiter.take(self.sub.label)
            if wait_s > 0:
                self._refused_in_row += 1
                if self._refused_in_row > MAX_REFUSED_IN_ROW:
                    return False
                raise RequestError(
                    "rate_limited",
                    f"too many messages; retry in {wait_s:.2f} s",
                    429,
                    {"retry_after_s": round(wait_s, 3)},
                )
            self._refused_in_row = 0
            self._handle(parsed)
        except RequestError as err:
            self.sub.outbox.push_control("error", error_message(err, ref))
        return True

    def _handle(self, msg: ClientMessage) -> None:
        sub = self.sub
        last = self.fanout.mirror.last_seq
        if isinstance(msg, SubscribeMsg):
            if msg.after is not None and self.attached:
                raise RequestError(
                    "after_not_first",
                    "'after' applies to a connection's first subscription: reconnect to resume",
                )
            flt = msg.filter()
            self.subs.add(msg.id, flt)
            sub.filters = self.subs.key
            sub.outbox.push_control(
                "subscribed",
                message("subscribed", id=msg.id, filter=flt.as_dict(), seq=last),
            )
            if not self.attached:
                self.fanout.attach(sub, msg.after if msg.after is not None else self.after)
                self.attached = True
            return
        if isinstance(msg, UnsubscribeMsg):
            if not self.subs.remove(msg.id):
                raise RequestError("not_subscribed", f"no subscription {msg.id!r}")
            sub.filters = self.subs.key
            sub.outbox.push_control("unsubscribed", message("unsubscribed", id=msg.id))
            return
        if isinstance(msg, PingMsg):
            sub.outbox.push_control("pong", message("pong", data=msg.data, seq=last))
            return
        if isinstance(msg, AuthMsg):
            raise RequestError("already_authenticated", "this connection is authenticated")
        raise RequestError("bad_message", "unexpected message")
