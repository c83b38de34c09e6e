"""Client reads on the component endpoint: state, blocks, batches, transactions, receipts.

As the validator's client handlers answer them: state and block lists page 100 entries by default
(at most 1000), an empty result is NO_RESOURCE, ids must be 128 hex digits, addresses and prefixes
an even number of hex digits (at most 70). State is served at the head only: any other state root
is NO_ROOT.
"""
from __future__ import annotations

import re

from google.protobuf.message import DecodeError
from sawtooth_sdk.protobuf.client_batch_pb2 import ClientBatchGetRequest, ClientBatchGetResponse
from sawtooth_sdk.protobuf.client_block_pb2 import (
    ClientBlockGetByBatchIdRequest,
    ClientBlockGetByIdRequest,
    ClientBlockGetByNumRequest,
    ClientBlockGetByTransactionIdRequest,
    ClientBlockGetResponse,
    ClientBlockListRequest,
    ClientBlockListResponse,
)
from sawtooth_sdk.protobuf.client_list_control_pb2 import ClientPagingResponse
from sawtooth_sdk.protobuf.client_receipt_pb2 import ClientReceiptGetRequest, ClientReceiptGetResponse
from sawtooth_sdk.protobuf.client_state_pb2 import (
    ClientStateGetRequest,
    ClientStateGetResponse,
    ClientStateListRequest,
    ClientStateListResponse,
)
from sawtooth_sdk.protobuf.client_status_pb2 import ClientStatusGetResponse
from sawtooth_sdk.protobuf.client_transaction_pb2 import (
    ClientTransactionGetRequest,
    ClientTransactionGetResponse,
)
from sawtooth_sdk.protobuf.transaction_receipt_pb2 import TransactionReceipt
from sawtooth_sdk.protobuf.validator_pb2 import Message

from trustmesh.devnet import wire
from trustmesh.devnet.publisher import Publisher
from trustmesh.devnet.store import ChainStore, StoredBlock

DEFAULT_PAGE = 100
MAX_PAGE = 1000

ID_RE = re.compile(r"^[0-9a-f]{128}$")
_NAMESPACE_RE = re.compile(r"^([0-9a-f]{2}){0,35}$")

Response = tuple[int, bytes]


class ChainQueries:
    """Answers read-only client requests from the chain store and the publisher's head."""

    def __init__(self, *, store: ChainStore, publisher: Publisher, endpoint: str) -> None:
        self._store = store
        self._publisher = publisher
        self._endpoint = endpoint

    @property
    def _head(self) -> StoredBlock:
        return self._publisher.head

    # -- state ------------------------------------------------------------------------------------
    def _root_ok(self, state_root: str) -> bool:
        return not state_root or state_root == self._head.header.state_root_hash

    def state_get(self, content: bytes) -> Response:
        kind, proto = Message.CLIENT_STATE_GET_RESPONSE, ClientStateGetResponse
        request = ClientStateGetRequest()
        try:
            request.ParseFromString(content)
        except DecodeError:
            return kind, wire.encode_state_get_client_response(proto.INTERNAL_ERROR)
        if request.state_root and not re.fullmatch(r"[0-9a-f]{64}", request.state_root):
            return kind, wire.encode_state_get_client_response(proto.INVALID_ROOT)
        if not self._root_ok(request.state_root):
            return kind, wire.encode_state_get_client_response(proto.NO_ROOT)
        root = self._head.header.state_root_hash
        if not _NAMESPACE_RE.match(request.address) or len(request.address) != 70:
            return kind, wire.encode_state_get_client_response(proto.INVALID_ADDRESS)
        value = self._store.get(request.address)
        if value is None:
            return kind, wire.encode_state_get_client_response(proto.NO_RESOURCE)
        return kind, wire.encode_state_get_client_response(proto.OK, value, root)

    def state_list(self, content: bytes) -> Response:
        kind, proto = Message.CLIENT_STATE_LIST_RESPONSE, ClientStateListResponse
        request = ClientStateListRequest()
        try:
            request.ParseFromString(content)
        except DecodeError:
            return kind, wire.encode_state_list_client_response(proto.INTERNAL_ERROR)
        if request.state_root and not re.fullmatch(r"[0-9a-f]{64}", request.state_root):
            return kind, wire.encode_state_list_client_response(proto.INVALID_ROOT)
        if not self._root_ok(request.state_root):
            return kind, wire.encode_state_list_client_response(proto.NO_ROOT)
        root = self._head.header.state_root_hash
        if not _NAMESPACE_RE.match(request.address):
            return kind, wire.encode_state_list_client_response(proto.INVALID_ADDRESS)
        if request.sorting and (list(request.sorting[0].keys) != ["default"] or request.sorting[0].reverse):
            return kind, wire.encode_state_list_client_response(proto.INVALID_SORT)
        limit = min(request.paging.limit, MAX_PAGE) or DEFAULT_PAGE
        start = request.paging.start
        if start and (not start.startswith(request.address) or not self._store.state_exists(start)):
            return kind, wire.encode_state_list_client_response(proto.INVALID_PAGING)
        rows = self._store.list_state(prefix=request.address, start=start, limit=limit + 1)
        if not rows:
            return kind, wire.encode_state_list_client_response(proto.NO_RESOURCE, state_root=root, paging=("", "", 0))
        next_ = rows[limit][0] if len(rows) > limit else ""
        return kind, wire.encode_state_list_client_response(
            proto.OK, rows[:limit], state_root=root, paging=(next_, rows[0][0], limit)
        )

    # -- blocks, batches, transactions, receipts --------------------------------------------------
    def _block_response(self, stored: StoredBlock | None) -> Response:
        proto = ClientBlockGetResponse
        if stored is None:
            return Message.CLIENT_BLOCK_GET_RESPONSE, proto(status=proto.NO_RESOURCE).SerializeToString()
        # status OK (field 1) + the stored block bytes as field 2: no re-encoding of the block
        return Message.CLIENT_BLOCK_GET_RESPONSE, wire.varint(1 << 3) + wire.varint(proto.OK) + wire.bytes_field(
            2, stored.raw
        )

    def block_get(self, message_type: int, content: bytes) -> Response:
        proto = ClientBlockGetResponse
        try:
            if message_type == Message.CLIENT_BLOCK_GET_BY_NUM_REQUEST:
                by_num = ClientBlockGetByNumRequest.FromString(content)
                return self._block_response(self._store.block_by_num(by_num.block_num))
            if message_type == Message.CLIENT_BLOCK_GET_BY_ID_REQUEST:
                block_id = ClientBlockGetByIdRequest.FromString(content).block_id
                num = self._store.block_num_of(block_id) if ID_RE.match(block_id) else -2
            elif message_type == Message.CLIENT_BLOCK_GET_BY_BATCH_ID_REQUEST:
                batch_id = ClientBlockGetByBatchIdRequest.FromString(content).batch_id
                num = self._store.block_num_of_batch(batch_id) if ID_RE.match(batch_id) else -2
            else:
                txn_id = ClientBlockGetByTransactionIdRequest.FromString(content).transaction_id
                num = self._store.block_num_of_transaction(txn_id) if ID_RE.match(txn_id) else -2
        except DecodeError:
            return Message.CLIENT_BLOCK_GET_RESPONSE, proto(status=proto.INTERNAL_ERROR).SerializeToString()
        if num == -2:
            return Message.CLIENT_BLOCK_GET_RESPONSE, proto(status=proto.INVALID_ID).SerializeToString()
        return self._block_response(None if num is None else self._store.block_by_num(num))

    def block_list(self, content: bytes) -> Response:
        kind, proto = Message.CLIENT_BLOCK_LIST_RESPONSE, ClientBlockListResponse
        try:
            request = ClientBlockListRequest.FromString(content)
        except DecodeError:
            return kind, proto(status=proto.INTERNAL_ERROR).SerializeToString()
        head = self._head
        if request.head_id and request.head_id != head.block_id:
            num = self._store.block_num_of(request.head_id)
            if num is None:
                return kind, proto(status=proto.NO_ROOT).SerializeToString()
            top = num
        else:
            top = head.block_num
        head_id = request.head_id or head.block_id
        if request.block_ids:
            if any(not ID_RE.match(b) for b in request.block_ids):
                return kind, proto(status=proto.INVALID_ID).SerializeToString()
            found = [self._store.block_by_id(b) for b in request.block_ids]
            blocks = [s.block for s in found if s is not None and s.block_num <= top]
            status = proto.OK if blocks else proto.NO_RESOURCE
            return kind, proto(status=status, blocks=blocks, head_id=head_id,
                               paging=ClientPagingResponse()).SerializeToString()
        reverse = False
        if request.sorting:
            if list(request.sorting[0].keys) != ["block_num"]:
                return kind, proto(status=proto.INVALID_SORT).SerializeToString()
            reverse = request.sorting[0].reverse
        limit = min(request.paging.limit, MAX_PAGE) or DEFAULT_PAGE
        if request.paging.start:
            try:
                start = int(request.paging.start, 16)
            except ValueError:
                return kind, proto(status=proto.INVALID_PAGING).SerializeToString()
            if start > top or start < 0:
                return kind, proto(status=proto.INVALID_PAGING).SerializeToString()
        else:
            start = 0 if reverse else top
        if reverse:
            rows = [s for s in self._store.blocks_ascending(start_num=start, limit=limit + 1) if s.block_num <= top]
        else:
            rows = self._store.blocks_descending(start_num=start, limit=limit + 1)
        if not rows:
            return kind, proto(status=proto.NO_RESOURCE, head_id=head_id).SerializeToString()
        paging = ClientPagingResponse(start=_hex_num(rows[0].block_num), limit=limit)
        if len(rows) > limit:
            paging.next = _hex_num(rows[limit].block_num)
        return kind, proto(status=proto.OK, blocks=[s.block for s in rows[:limit]], head_id=head_id,
                           paging=paging).SerializeToString()

    def batch_get(self, content: bytes) -> Response:
        kind, proto = Message.CLIENT_BATCH_GET_RESPONSE, ClientBatchGetResponse
        try:
            batch_id = ClientBatchGetRequest.FromString(content).batch_id
        except DecodeError:
            return kind, proto(status=proto.INTERNAL_ERROR).SerializeToString()
        if not ID_RE.match(batch_id):
            return kind, proto(status=proto.INVALID_ID).SerializeToString()
        num = self._store.block_num_of_batch(batch_id)
        stored = self._store.block_by_num(num) if num is not None else None
        for batch in stored.block.batches if stored else []:
            if batch.header_signature == batch_id:
                return kind, proto(status=proto.OK, batch=batch).SerializeToString()
        return kind, proto(status=proto.NO_RESOURCE).SerializeToString()

    def transaction_get(self, content: bytes) -> Response:
        kind, proto = Message.CLIENT_TRANSACTION_GET_RESPONSE, ClientTransactionGetResponse
        try:
            txn_id = ClientTransactionGetRequest.FromString(content).transaction_id
        except DecodeError:
            return kind, proto(status=proto.INTERNAL_ERROR).SerializeToString()
        if not ID_RE.match(txn_id):
            return kind, proto(status=proto.INVALID_ID).SerializeToString()
        num = self._store.block_num_of_transaction(txn_id)
        stored = self._store.block_by_num(num) if num is not None else None
        for batch in stored.block.batches if stored else []:
            for txn in batch.transactions:
                if txn.header_signature == txn_id:
                    return kind, proto(status=proto.OK, transaction=txn).SerializeToString()
        return kind, proto(status=proto.NO_RESOURCE).SerializeToString()

    def receipt_get(self, content: bytes) -> Response:
        kind, proto = Message.CLIENT_RECEIPT_GET_RESPONSE, ClientReceiptGetResponse
        try:
            ids = list(ClientReceiptGetRequest.FromString(content).transaction_ids)
        except DecodeError:
            return kind, proto(status=proto.INTERNAL_ERROR).SerializeToString()
        if any(not ID_RE.match(t) for t in ids):
            return kind, proto(status=proto.INVALID_ID).SerializeToString()
        receipts = []
        for txn_id in ids:
            blob = self._store.receipt(txn_id)
            if blob is None:
                return kind, proto(status=proto.NO_RESOURCE).SerializeToString()
            receipts.append(TransactionReceipt.FromString(blob))
        return kind, proto(status=proto.OK, receipts=receipts).SerializeToString()

    def status_get(self) -> Response:
        response = ClientStatusGetResponse(status=ClientStatusGetResponse.OK, endpoint=self._endpoint)
        return Message.CLIENT_STATUS_GET_RESPONSE, response.SerializeToString()


def _hex_num(block_num: int) -> str:
    return f"0x{block_num:016x}"
