"""Client event subscriptions: subscribe (with catch-up from last_known_block_ids), unsubscribe, broadcast.

As the validator does: the subscribe response goes out first, then one ``CLIENT_EVENTS`` message
per block after the newest known block id (the null id ``0000000000000000`` means from genesis),
then live blocks. For each committed block, every listening subscriber gets the block's events
that match its subscriptions, whenever the block yields events for anyone.
"""
from __future__ import annotations

import logging
from collections.abc import Callable

from google.protobuf.message import DecodeError
from sawtooth_sdk.protobuf.client_event_pb2 import (
    ClientEventsGetRequest,
    ClientEventsGetResponse,
    ClientEventsSubscribeRequest,
    ClientEventsSubscribeResponse,
    ClientEventsUnsubscribeResponse,
)
from sawtooth_sdk.protobuf.events_pb2 import EventList
from sawtooth_sdk.protobuf.transaction_receipt_pb2 import TransactionReceipt
from sawtooth_sdk.protobuf.validator_pb2 import Message

from trustmesh.devnet.events import (
    NULL_BLOCK_ID,
    InvalidFilter,
    Subscriber,
    Subscription,
    block_events,
    parse_subscriptions,
)
from trustmesh.devnet.publisher import Committed
from trustmesh.devnet.store import ChainStore, StoredBlock

LOGGER = logging.getLogger(__name__)

Notify = Callable[[bytes, int, bytes], None]  # identity, message type, content (fresh correlation id)
Reply = Callable[[int, bytes], None]


class Broadcaster:
    """Subscribers by connection identity, and event delivery."""

    def __init__(self, *, store: ChainStore, head: Callable[[], StoredBlock], notify: Notify) -> None:
        self._store = store
        self._head = head
        self._notify = notify
        self._subscribers: dict[bytes, Subscriber] = {}

    def subscribe(self, identity: bytes, fd: int | None, content: bytes, reply: Reply) -> None:
        request = ClientEventsSubscribeRequest()
        response = ClientEventsSubscribeResponse()
        try:
            request.ParseFromString(content)
            subscriptions = parse_subscriptions(request.subscriptions)
        except (DecodeError, InvalidFilter) as exc:
            response.status = ClientEventsSubscribeResponse.INVALID_FILTER
            response.response_message = str(exc) or "undecodable request"
            reply(Message.CLIENT_EVENTS_SUBSCRIBE_RESPONSE, response.SerializeToString())
            return
        start_after: int | None = None
        if request.last_known_block_ids:
            known = [self._known_num(block_id) for block_id in request.last_known_block_ids]
            nums = [n for n in known if n is not None]
            if not nums:
                response.status = ClientEventsSubscribeResponse.UNKNOWN_BLOCK
                response.response_message = "none of the last known block ids is in the chain"
                reply(Message.CLIENT_EVENTS_SUBSCRIBE_RESPONSE, response.SerializeToString())
                return
            start_after = max(nums)
        self._subscribers[identity] = Subscriber(identity=identity, fd=fd, subscriptions=subscriptions)
        response.status = ClientEventsSubscribeResponse.OK
        reply(Message.CLIENT_EVENTS_SUBSCRIBE_RESPONSE, response.SerializeToString())
        LOGGER.info("client %s subscribed to %s", identity.hex()[:12], [s.event_type for s in subscriptions])
        if start_after is not None:
            self._catch_up(identity, subscriptions, start_after)

    def _known_num(self, block_id: str) -> int | None:
        if block_id == NULL_BLOCK_ID:
            return -1
        return self._store.block_num_of(block_id)

    def _catch_up(self, identity: bytes, subscriptions: list[Subscription], after: int) -> None:
        head = self._head().block_num
        num = after + 1
        while num <= head:
            blocks = self._store.blocks_ascending(start_num=num, limit=64)
            if not blocks:
                break
            for stored in blocks:
                receipts = [_receipt(blob) for blob in self._store.receipts_of_block(stored.block_num)]
                events = block_events(
                    header=stored.header, block_id=stored.block_id, receipts=receipts, wanted=subscriptions
                )
                self._notify(identity, Message.CLIENT_EVENTS, EventList(events=events).SerializeToString())
                num = stored.block_num + 1

    def events_get(self, content: bytes) -> tuple[int, bytes]:
        """CLIENT_EVENTS_GET_REQUEST: the matching events of the given blocks, in block order given."""
        kind = Message.CLIENT_EVENTS_GET_RESPONSE
        try:
            request = ClientEventsGetRequest.FromString(content)
            subscriptions = parse_subscriptions(request.subscriptions)
        except (DecodeError, InvalidFilter):
            return kind, ClientEventsGetResponse(status=ClientEventsGetResponse.INVALID_FILTER).SerializeToString()
        events = []
        for block_id in request.block_ids:
            stored = self._store.block_by_id(block_id)
            if stored is None:
                return kind, ClientEventsGetResponse(status=ClientEventsGetResponse.UNKNOWN_BLOCK).SerializeToString()
            receipts = [_receipt(blob) for blob in self._store.receipts_of_block(stored.block_num)]
            events.extend(
                block_events(header=stored.header, block_id=stored.block_id, receipts=receipts, wanted=subscriptions)
            )
        return kind, ClientEventsGetResponse(status=ClientEventsGetResponse.OK, events=events).SerializeToString()

    def unsubscribe(self, identity: bytes, reply: Reply) -> None:
        self._subscribers.pop(identity, None)
        response = ClientEventsUnsubscribeResponse(status=ClientEventsUnsubscribeResponse.OK)
        reply(Message.CLIENT_EVENTS_UNSUBSCRIBE_RESPONSE, response.SerializeToString())

    def connection_closed(self, fd: int) -> None:
        for identity in [i for i, s in self._subscribers.items() if s.fd == fd]:
            LOGGER.info("subscriber %s disconnected", identity.hex()[:12])
            del self._subscribers[identity]

    def on_committed(self, committed: Committed) -> None:
        if not self._subscribers:
            return
        wanted: list[Subscription] = []
        for subscriber in self._subscribers.values():
            wanted.extend(s for s in subscriber.subscriptions if s not in wanted)
        events = block_events(
            header=committed.block.header,
            block_id=committed.block.block_id,
            receipts=[_receipt(blob) for blob in committed.receipts],
            wanted=wanted,
        )
        if not events:
            return
        for subscriber in list(self._subscribers.values()):
            mine = [e for e in events if subscriber.wants(e)]
            self._notify(subscriber.identity, Message.CLIENT_EVENTS, EventList(events=mine).SerializeToString())


def _receipt(blob: bytes) -> TransactionReceipt:
    receipt = TransactionReceipt()
    receipt.ParseFromString(blob)
    return receipt
