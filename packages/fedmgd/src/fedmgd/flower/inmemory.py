"""An in-memory Flower Grid: the real ServerApp logic and ClientApp functions, with messages handed over in this
process instead of through a SuperLink (fast agreement tests, `flower.runtime`-free debugging). Each node keeps
its own Context (node_config, persistent state) as a SuperNode would; a node can be killed to test drop-outs."""
from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterable

from flwr.app import Context, Message, RecordDict
from flwr.app.error import Error
from flwr.serverapp import Grid
from flwr.supercore.task_identity import TaskIdentity

from .apps import record_bytes

__all__ = ["InMemoryGrid"]


class InMemoryGrid(Grid):
    def __init__(self, client_app, run_config: dict, node_configs: list[dict], run_id: int = 1):
        TaskIdentity.run_id, TaskIdentity.task_id, TaskIdentity.node_id = run_id, 0, 0  # this process is the server
        self.client_app, self._run = client_app, None
        ids = itertools.count(1001)
        self.contexts = {next(ids): Context(run_id=run_id, node_id=0, node_config=dict(nc), state=RecordDict(),
                                            run_config=dict(run_config)) for nc in node_configs}
        for nid, ctx in self.contexts.items():
            ctx.node_id = nid
        self.down: set[int] = set()
        self.kill_after: dict[int, int] = {}  # node -> messages it still answers before it "dies"
        self.sent_bytes = self.received_bytes = 0
        self._replies: dict[str, Message] = {}

    # Grid API ---------------------------------------------------------------------------------------------
    def set_run(self, run) -> None:
        self._run = run

    @property
    def run(self):
        return self._run

    def create_message(self, content: RecordDict, message_type: str, dst_node_id: int, group_id: str,
                       ttl: float | None = None) -> Message:
        return Message(content, dst_node_id=dst_node_id, message_type=message_type, group_id=group_id, ttl=ttl)

    def get_node_ids(self) -> Iterable[int]:
        return [n for n in self.contexts if n not in self.down]

    def kill(self, node_id: int) -> None:
        self.down.add(node_id)

    def _deliver(self, msg: Message) -> Message | None:
        nid = msg.metadata.dst_node_id
        if nid in self.down or nid not in self.contexts:
            return None
        if nid in self.kill_after:
            if self.kill_after[nid] <= 0:
                self.down.add(nid)
                return None
            self.kill_after[nid] -= 1
        msg.metadata.__dict__["_message_id"] = uuid.uuid4().hex  # the SuperLink's job; read-only property
        self.sent_bytes += record_bytes(msg.content)
        try:
            rep = self.client_app(message=msg, context=self.contexts[nid])
        except Exception as e:  # noqa: BLE001 - as the SuperNode does: an error reply with the exception
            rep = Message(Error(code=0, reason=f"{type(e)}:<'{e}'>"), reply_to=msg)
        if not rep.has_error():
            self.received_bytes += record_bytes(rep.content)
        return rep

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        ids = []
        for m in messages:
            rep = self._deliver(m)
            if rep is not None:
                self._replies[m.metadata.message_id] = rep
                ids.append(m.metadata.message_id)
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        return [self._replies.pop(i) for i in message_ids if i in self._replies]

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> Iterable[Message]:
        return [r for r in (self._deliver(m) for m in messages) if r is not None]
