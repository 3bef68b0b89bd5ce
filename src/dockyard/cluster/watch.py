"""The watch loop: list, then watch from the listed revision, and never lose the thread.

1. List every key under the root (linearizable, any member) at revision R;
   the view diffs it against what it held (ClusterView.reset).
2. Watch the root from R+1 on one member; apply each event whose revision
   is after the last one applied (a revision is applied once, whatever a
   resumed stream sends again), and move on with progress notifications.
3. When the stream ends or breaks (member killed, closed, "no leader"),
   watch again from the last revision applied, on the next member.
4. When that revision has been compacted, go back to 1 (a full resync: the
   view tells only what changed).

A stream can also die without a sound (a member cut off keeps the TCP
connection open; a member partitioned from its peers has no leader). So
when nothing came for `idle` seconds, the loop asks the stream's own member
for the oldest key changed after the last applied revision (a linearizable
read: it fails on a member without a leader): a failure, or a change
still undelivered one idle period later, ends the stream and the loop
resumes elsewhere. Every `resync_every` seconds it also lists again (the
stream stays; events up to the listing are skipped), which bounds what a
lost deletion, the one change a probe cannot see, could cost.

While no member answers, the view keeps what it had (containers keep
talking to what was there) and `connected` is False.
"""

from __future__ import annotations

import logging
import threading
import time

from dockyard.cluster.etcd import Compacted, EtcdClient
from dockyard.cluster.keys import Keys
from dockyard.cluster.stream import StreamEnded, WatchStream
from dockyard.cluster.view import ClusterView
from dockyard.cluster.wire import Event, b64
from dockyard.errors import ClusterUnavailable, DockyardError

log = logging.getLogger("dockyard.cluster")


class WatchLoop:
    def __init__(
        self,
        client: EtcdClient,
        keys: Keys,
        view: ClusterView,
        *,
        idle: float = 2.0,
        resync_every: float = 300.0,
    ) -> None:
        self.client = client
        self.keys = keys
        self.view = view
        self.idle = idle
        self.resync_every = resync_every
        self.revision = 0  # the last revision applied to the view
        self.connected = False
        self.member: str | None = None  # the member the stream is on
        # Counters for logs and tests.
        self.lists = 0
        self.streams = 0
        self._stop = threading.Event()
        self._stream: WatchStream | None = None
        self._thread: threading.Thread | None = None
        self._listed_at = 0.0
        self._pending: int | None = None
        self._next = 0

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="cluster-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        stream = self._stream
        if stream is not None:
            stream.close()
        if self._thread is not None:
            self._thread.join(timeout=self.idle + self.client.config.deadline + 1)
            self._thread = None

    # -- the loop ---------------------------------------------------------------------------

    def _run(self) -> None:
        # A loop started again (after stop) resumes from where it was; a first start lists.
        must_list = self.revision == 0
        pause = 0.05
        while not self._stop.is_set():
            try:
                if must_list:
                    self._list()
                    must_list = False
                self._watch()
                pause = 0.05
            except Compacted:
                log.warning("watch: revision %d was compacted; listing everything again", self.revision)
                must_list = True
            except DockyardError as e:
                # Once per outage, not once per try.
                (log.warning if self.connected or pause == 0.05 else log.debug)("watch: %s", e)
                self.connected = False
                self._stop.wait(pause)
                pause = min(pause * 2, 1.0)
            except Exception:
                # Never let the loop die: a view that stops moving is worse than a logged bug.
                self.connected = False
                log.exception("watch: unexpected error")
                self._stop.wait(1.0)
        self.connected = False

    def _list(self) -> None:
        root, end = self.keys.all
        result = self.client.range(root, end)
        self.view.reset(result.kvs, result.revision)
        self.revision = result.revision
        self._listed_at = time.monotonic()
        self._pending = None
        self.lists += 1

    def _watch(self) -> None:
        """One stream, from the last applied revision, until it ends."""
        stream, index = self._open()
        self._stream = stream
        self.connected = True
        self.member = stream.where
        created = False
        try:
            while not self._stop.is_set():
                try:
                    message = stream.next(self.idle)
                except StreamEnded as e:
                    log.info("watch: %s; resuming from revision %d", e, self.revision)
                    if not created:
                        # A stream closed before it was created: etcd's gateway does that to a
                        # token it no longer knows (a restarted member), without a word.
                        self.client.forget_token(index)
                    self._next = index + 1
                    return
                created = created or bool(message and message.get("created"))
                if message is None:
                    if not self._alive(index):
                        self._next = index + 1
                        return
                    continue
                if not self._take(message):
                    return
                if time.monotonic() - self._listed_at > self.resync_every:
                    self._list()
        finally:
            self._stream = None
            stream.close()

    def _open(self) -> tuple[WatchStream, int]:
        root, end = self.keys.all
        request = {
            "key": b64(root),
            "range_end": b64(end),
            "start_revision": str(self.revision + 1),
            "progress_notify": True,
        }
        reasons = []
        for index in self.client.order(self._next % len(self.client.config.endpoints)):
            try:
                stream = WatchStream.open(self.client, index, request, self.client.config.attempt_timeout)
            except StreamEnded as e:
                reasons.append(str(e))
                self.client.forget_token(index)
                continue
            except DockyardError as e:  # auth refused on that member
                reasons.append(f"{self.client.name(index)}: {e}")
                continue
            self.streams += 1
            return stream, index
        raise _Unreachable(reasons)

    def _take(self, message: dict) -> bool:
        """Apply one message; False when the stream is over (cancelled)."""
        if int(message.get("compact_revision", 0) or 0) > 0:
            raise Compacted(11, f"compacted at {message['compact_revision']}")
        if message.get("canceled"):
            log.info("watch: cancelled by the member: %s", message.get("cancel_reason", ""))
            return False
        if message.get("created"):
            return True
        events = [Event.wire(e) for e in message.get("events", [])]
        fresh = [e for e in events if e.revision > self.revision]
        if fresh:
            self.view.apply(fresh)
            self.revision = fresh[-1].revision
        elif not events:
            # A progress notification: every event up to this revision has been sent.
            header = int(message.get("header", {}).get("revision", 0))
            if header > self.revision:
                self.revision = header
                self.view.revision = max(self.view.revision, header)
        if self._pending is not None and self.revision >= self._pending:
            self._pending = None
        return True

    def _alive(self, index: int) -> bool:
        """Nothing came for a while: is the stream's member still there, and up to date?"""
        root, end = self.keys.all
        try:
            probe = self.client.range(
                root,
                end,
                keys_only=True,
                limit=1,
                min_mod_revision=self.revision + 1,
                sort_by_mod=True,
                only=index,
                timeout=max(self.idle, self.client.config.attempt_timeout),
            )
        except DockyardError as e:
            log.info("watch: the stream's member does not answer (%s); resuming elsewhere", e)
            return False
        if self._pending is not None and self.revision < self._pending:
            # Already changed at the last probe, an idle period ago, and still not here.
            log.warning(
                "watch: revision %d not delivered by %s after %.1f s; resuming elsewhere",
                self._pending,
                self.client.name(index),
                self.idle,
            )
            self._pending = None
            return False
        self._pending = probe.kvs[0].mod_revision if probe.kvs else None
        if time.monotonic() - self._listed_at > self.resync_every:
            self._list()
        return True


class _Unreachable(ClusterUnavailable):
    def __init__(self, reasons: list[str]) -> None:
        super().__init__("watch: no member accepts a watch: " + "; ".join(reasons))
