"""A minimal raw ZMQ DEALER client of the validator protocol, so devnet tests depend on nothing else."""
from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections import deque
from pathlib import Path

import zmq
from sawtooth_sdk.protobuf.batch_pb2 import Batch
from sawtooth_sdk.protobuf.client_batch_submit_pb2 import (
    ClientBatchStatus,
    ClientBatchStatusRequest,
    ClientBatchStatusResponse,
    ClientBatchSubmitRequest,
    ClientBatchSubmitResponse,
)
from sawtooth_sdk.protobuf.client_event_pb2 import ClientEventsSubscribeRequest, ClientEventsSubscribeResponse
from sawtooth_sdk.protobuf.client_state_pb2 import (
    ClientStateGetRequest,
    ClientStateGetResponse,
    ClientStateListRequest,
    ClientStateListResponse,
)
from sawtooth_sdk.protobuf.events_pb2 import Event, EventFilter, EventList, EventSubscription
from sawtooth_sdk.protobuf.validator_pb2 import Message
from sawtooth_signing import Signer

from trustmesh.devnet.demo_tp import FAMILY_NAME, FAMILY_VERSION, NAMESPACE, address
from trustmesh.ledger.batch import make_batch, make_transaction

TIMEOUT = 30.0


class RawClient:
    """One DEALER connection: request/response by correlation id; CLIENT_EVENTS kept in a queue."""

    def __init__(self, url: str) -> None:
        self.socket = zmq.Context.instance().socket(zmq.DEALER)
        self.socket.linger = 0
        self.socket.connect(url)
        self.events: deque[EventList] = deque()
        self._other: dict[str, Message] = {}

    def close(self) -> None:
        self.socket.close(linger=0)

    def send(self, message_type: int, content: bytes) -> str:
        correlation_id = uuid.uuid4().hex
        message = Message(message_type=message_type, correlation_id=correlation_id, content=content)
        self.socket.send(message.SerializeToString())
        return correlation_id

    def _receive(self, timeout: float) -> Message | None:
        if not self.socket.poll(int(timeout * 1000)):
            return None
        message = Message.FromString(self.socket.recv())
        if message.message_type == Message.CLIENT_EVENTS:
            self.events.append(EventList.FromString(message.content))
        return message

    def wait_reply(self, correlation_id: str, timeout: float = TIMEOUT) -> Message:
        deadline = time.monotonic() + timeout
        while correlation_id not in self._other:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no reply to {correlation_id}")
            message = self._receive(left)
            if message is not None and message.message_type != Message.CLIENT_EVENTS:
                self._other[message.correlation_id] = message
        return self._other.pop(correlation_id)

    def request(self, message_type: int, content: bytes, timeout: float = TIMEOUT) -> Message:
        return self.wait_reply(self.send(message_type, content), timeout)

    # -- conveniences -------------------------------------------------------------------------
    def submit(self, batches: list[Batch]) -> int:
        reply = self.request(
            Message.CLIENT_BATCH_SUBMIT_REQUEST, ClientBatchSubmitRequest(batches=batches).SerializeToString()
        )
        assert reply.message_type == Message.CLIENT_BATCH_SUBMIT_RESPONSE
        return ClientBatchSubmitResponse.FromString(reply.content).status

    def statuses(self, batch_ids: list[str], *, wait: bool = True, timeout: int = 30) -> list[ClientBatchStatus]:
        request = ClientBatchStatusRequest(batch_ids=batch_ids, wait=wait, timeout=timeout)
        reply = self.request(Message.CLIENT_BATCH_STATUS_REQUEST, request.SerializeToString(), timeout + 10)
        response = ClientBatchStatusResponse.FromString(reply.content)
        assert response.status == ClientBatchStatusResponse.OK, response
        return list(response.batch_statuses)

    def status(self, batch_id: str, *, wait: bool = True, timeout: int = 30) -> ClientBatchStatus:
        return self.statuses([batch_id], wait=wait, timeout=timeout)[0]

    def state_get(self, addr: str) -> bytes | None:
        reply = self.request(Message.CLIENT_STATE_GET_REQUEST, ClientStateGetRequest(address=addr).SerializeToString())
        response = ClientStateGetResponse.FromString(reply.content)
        if response.status == ClientStateGetResponse.NO_RESOURCE:
            return None
        assert response.status == ClientStateGetResponse.OK, response
        return bytes(response.value)

    def value(self, key: str) -> str | None:
        raw = self.state_get(address(key))
        return None if raw is None else raw.decode()

    def state_list(self, prefix: str, *, start: str = "", limit: int = 0) -> ClientStateListResponse:
        request = ClientStateListRequest(address=prefix)
        request.paging.start = start
        request.paging.limit = limit
        reply = self.request(Message.CLIENT_STATE_LIST_REQUEST, request.SerializeToString())
        return ClientStateListResponse.FromString(reply.content)

    def subscribe(
        self, subscriptions: list[EventSubscription], last_known_block_ids: list[str] | None = None
    ) -> ClientEventsSubscribeResponse:
        request = ClientEventsSubscribeRequest(
            subscriptions=subscriptions, last_known_block_ids=last_known_block_ids or []
        )
        reply = self.request(Message.CLIENT_EVENTS_SUBSCRIBE_REQUEST, request.SerializeToString())
        return ClientEventsSubscribeResponse.FromString(reply.content)

    def next_events(self, timeout: float = TIMEOUT) -> list[Event]:
        deadline = time.monotonic() + timeout
        while not self.events:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no CLIENT_EVENTS arrived")
            message = self._receive(left)
            if message is not None and message.message_type != Message.CLIENT_EVENTS:
                self._other[message.correlation_id] = message
        return list(self.events.popleft().events)


def kv_batch(signer: Signer, *payloads: str, keys: list[str] | None = None, inputs: list[str] | None = None,
             outputs: list[str] | None = None) -> Batch:
    """One batch with one ``tm-kv`` transaction per payload, declaring the whole namespace by default."""
    txns = [
        make_transaction(
            signer,
            family_name=FAMILY_NAME,
            family_version=FAMILY_VERSION,
            payload=p.encode(),
            inputs=inputs if inputs is not None else ([address(k) for k in keys] if keys else [NAMESPACE]),
            outputs=outputs if outputs is not None else ([address(k) for k in keys] if keys else [NAMESPACE]),
        )
        for p in payloads
    ]
    return make_batch(signer, txns)


def event_filter(key: str, match: str, kind: int = EventFilter.SIMPLE_ANY) -> EventFilter:
    return EventFilter(key=key, match_string=match, filter_type=kind)


class TpProcess:
    """A demo TP child process, stopped by PID."""

    def __init__(self, *, url: str, name: str, log_dir: Path, raw_headers: bool = False) -> None:
        command = [sys.executable, "-m", "trustmesh.devnet.demo_tp", "--url", url, "--name", name]
        if raw_headers:
            command.append("--raw-headers")
        self.log_path = log_dir / f"tp-{name}.log"
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def wait_registered(self, timeout: float = 60.0) -> None:
        """Until the SDK core logs a successful registration (its log is the only outside sign)."""
        deadline = time.monotonic() + timeout
        while "register attempt: OK" not in self.log_path.read_text(errors="replace"):
            assert self.process.poll() is None, f"TP exited; see {self.log_path}"
            assert time.monotonic() < deadline, f"TP did not register; see {self.log_path}"
            time.sleep(0.05)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
