"""Protobuf wire encoding of the messages on the devnet's hot path, without protobuf objects.

The SDK's generated classes run on protobuf's pure-Python implementation here, which costs tens
of microseconds per message; per transaction the devnet handles a dozen. These functions read and
write the same bytes (proto3 rules: unknown fields skipped, empty fields omitted) for the
envelope, transactions and batches, TP state requests and responses, receipts and blocks. Field
numbers are those of the Sawtooth 1.2 ``.proto`` files; tests compare against the SDK classes.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from google.protobuf.message import DecodeError

_VARINT, _FIXED64, _BYTES, _FIXED32 = 0, 1, 2, 5


class WireError(DecodeError):
    """Bytes that are not a valid encoding of the expected message."""


# -- primitives ---------------------------------------------------------------------------------
def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    end = len(data)
    while True:
        if pos >= end or shift > 63:
            raise WireError("truncated or overlong varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def fields(data: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    """(field number, wire type, value) for each field; fixed-width values come back as 0."""
    pos, end = 0, len(data)
    while pos < end:
        key, pos = _read_varint(data, pos)
        number, kind = key >> 3, key & 7
        if number == 0:
            raise WireError("field number 0")
        if kind == _VARINT:
            value, pos = _read_varint(data, pos)
            yield number, kind, value
        elif kind == _BYTES:
            length, pos = _read_varint(data, pos)
            stop = pos + length
            if stop > end:
                raise WireError("truncated length-delimited field")
            yield number, kind, data[pos:stop]
            pos = stop
        elif kind in (_FIXED64, _FIXED32):
            pos += 8 if kind == _FIXED64 else 4
            if pos > end:
                raise WireError("truncated fixed-width field")
            yield number, kind, 0
        else:
            raise WireError(f"unsupported wire type {kind}")


def _text(value: int | bytes) -> str:
    assert isinstance(value, bytes)
    try:
        return value.decode()
    except UnicodeDecodeError as exc:
        raise WireError("string field is not UTF-8") from exc


def varint(value: int) -> bytes:
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def bytes_field(number: int, data: bytes) -> bytes:
    """A length-delimited field (always written, even when empty: for repeated entries)."""
    return varint(number << 3 | _BYTES) + varint(len(data)) + data


def optional_bytes(number: int, data: bytes) -> bytes:
    return bytes_field(number, data) if data else b""


def optional_varint(number: int, value: int) -> bytes:
    return varint(number << 3 | _VARINT) + varint(value) if value else b""


# -- the envelope -------------------------------------------------------------------------------
def decode_message(data: bytes) -> tuple[int, str, bytes]:
    """``validator_pb2.Message`` → (message_type, correlation_id, content)."""
    kind, correlation_id, content = 0, "", b""
    for number, wire, value in fields(data):
        if number == 1 and wire == _VARINT:
            assert isinstance(value, int)
            kind = value
        elif number == 2 and wire == _BYTES:
            correlation_id = _text(value)
        elif number == 3 and wire == _BYTES:
            assert isinstance(value, bytes)
            content = value
    return kind, correlation_id, content


def encode_message(message_type: int, correlation_id: str, content: bytes) -> bytes:
    return optional_varint(1, message_type) + optional_bytes(2, correlation_id.encode()) + optional_bytes(3, content)


# -- transactions and batches -------------------------------------------------------------------
@dataclass(frozen=True)
class TxnHeader:
    """The fields of a ``TransactionHeader`` the ledger uses."""

    batcher_public_key: str
    dependencies: tuple[str, ...]
    family_name: str
    family_version: str
    inputs: tuple[str, ...]
    nonce: str
    outputs: tuple[str, ...]
    payload_sha512: str
    signer_public_key: str


def decode_txn_header(data: bytes) -> TxnHeader:
    strings: dict[int, str] = {}
    lists: dict[int, list[str]] = {2: [], 5: [], 7: []}
    for number, wire, value in fields(data):
        if wire != _BYTES:
            continue
        if number in lists:
            lists[number].append(_text(value))
        elif number in (1, 3, 4, 6, 9, 10):
            strings[number] = _text(value)
    return TxnHeader(
        batcher_public_key=strings.get(1, ""),
        dependencies=tuple(lists[2]),
        family_name=strings.get(3, ""),
        family_version=strings.get(4, ""),
        inputs=tuple(lists[5]),
        nonce=strings.get(6, ""),
        outputs=tuple(lists[7]),
        payload_sha512=strings.get(9, ""),
        signer_public_key=strings.get(10, ""),
    )


def decode_batch_header(data: bytes) -> tuple[str, list[str]]:
    """``BatchHeader`` → (signer_public_key, transaction_ids)."""
    signer, ids = "", []
    for number, wire, value in fields(data):
        if number == 1 and wire == _BYTES:
            signer = _text(value)
        elif number == 2 and wire == _BYTES:
            ids.append(_text(value))
    return signer, ids


def decode_transaction(data: bytes) -> tuple[bytes, str, bytes]:
    """``Transaction`` → (header bytes, header_signature, payload)."""
    header, signature, payload = b"", "", b""
    for number, wire, value in fields(data):
        if wire != _BYTES:
            continue
        assert isinstance(value, bytes)
        if number == 1:
            header = value
        elif number == 2:
            signature = _text(value)
        elif number == 3:
            payload = value
    return header, signature, payload


def decode_batch(data: bytes) -> tuple[bytes, str, list[bytes]]:
    """``Batch`` → (header bytes, header_signature, encoded transactions)."""
    header, signature, transactions = b"", "", []
    for number, wire, value in fields(data):
        if wire != _BYTES:
            continue
        assert isinstance(value, bytes)
        if number == 1:
            header = value
        elif number == 2:
            signature = _text(value)
        elif number == 3:
            transactions.append(value)
    return header, signature, transactions


def split_submit_request(data: bytes) -> list[bytes]:
    """``ClientBatchSubmitRequest`` → the encoded batches, as sent."""
    return [value for number, wire, value in fields(data) if number == 1 and wire == _BYTES]  # type: ignore[misc]


def encode_block(header: bytes, header_signature: str, batches: Iterable[bytes]) -> bytes:
    return (
        optional_bytes(1, header)
        + optional_bytes(2, header_signature.encode())
        + b"".join(bytes_field(3, batch) for batch in batches)
    )


# -- TP requests and responses ------------------------------------------------------------------
def encode_process_request(
    *, header: bytes, raw_header: bool, payload: bytes, signature: str, context_id: str
) -> bytes:
    """``TpProcessRequest``: the transaction's own header bytes go in as the parsed header (field 1,
    EXPANDED) or as ``header_bytes`` (field 5, RAW); both decode to the same header."""
    return (
        bytes_field(5 if raw_header else 1, header)
        + optional_bytes(2, payload)
        + optional_bytes(3, signature.encode())
        + optional_bytes(4, context_id.encode())
    )


def decode_context_addresses(data: bytes) -> tuple[str, list[str]]:
    """``TpStateGetRequest`` / ``TpStateDeleteRequest`` → (context_id, addresses)."""
    context_id, addresses = "", []
    for number, wire, value in fields(data):
        if number == 1 and wire == _BYTES:
            context_id = _text(value)
        elif number == 2 and wire == _BYTES:
            addresses.append(_text(value))
    return context_id, addresses


def decode_state_set(data: bytes) -> tuple[str, list[tuple[str, bytes]]]:
    """``TpStateSetRequest`` → (context_id, [(address, data)])."""
    context_id, entries = "", []
    for number, wire, value in fields(data):
        if number == 1 and wire == _BYTES:
            context_id = _text(value)
        elif number == 2 and wire == _BYTES:
            assert isinstance(value, bytes)
            address, payload = "", b""
            for inner, inner_wire, inner_value in fields(value):
                if inner == 1 and inner_wire == _BYTES:
                    address = _text(inner_value)
                elif inner == 2 and inner_wire == _BYTES:
                    assert isinstance(inner_value, bytes)
                    payload = inner_value
            entries.append((address, payload))
    return context_id, entries


def decode_event_add(data: bytes) -> tuple[str, bytes]:
    """``TpEventAddRequest`` → (context_id, the encoded Event, kept as is)."""
    context_id, event = "", b""
    for number, wire, value in fields(data):
        if number == 1 and wire == _BYTES:
            context_id = _text(value)
        elif number == 2 and wire == _BYTES:
            assert isinstance(value, bytes)
            event = value
    return context_id, event


def decode_receipt_add_data(data: bytes) -> tuple[str, bytes]:
    """``TpReceiptAddDataRequest`` → (context_id, data)."""
    context_id, payload = "", b""
    for number, wire, value in fields(data):
        if number == 1 and wire == _BYTES:
            context_id = _text(value)
        elif number == 3 and wire == _BYTES:
            assert isinstance(value, bytes)
            payload = value
    return context_id, payload


def encode_state_get_response(entries: Iterable[tuple[str, bytes | None]], status: int) -> bytes:
    """``TpStateGetResponse``: an entry per address (empty data when unset), then the status."""
    body = b"".join(
        bytes_field(1, bytes_field(1, address.encode()) + optional_bytes(2, value or b"")) for address, value in entries
    )
    return body + optional_varint(2, status)


def encode_addresses_response(addresses: Iterable[str], status: int) -> bytes:
    """``TpStateSetResponse`` / ``TpStateDeleteResponse``: addresses (field 1), status (field 2)."""
    return b"".join(bytes_field(1, a.encode()) for a in addresses) + optional_varint(2, status)


def encode_status_response(status: int) -> bytes:
    """``TpEventAddResponse`` / ``TpReceiptAddDataResponse``: only a status, in field 2."""
    return optional_varint(2, status)


def decode_process_response(data: bytes) -> tuple[int, str, bytes]:
    """``TpProcessResponse`` → (status, message, extended_data)."""
    status, message, extended = 0, "", b""
    for number, wire, value in fields(data):
        if number == 1 and wire == _VARINT:
            assert isinstance(value, int)
            status = value
        elif number == 2 and wire == _BYTES:
            message = _text(value)
        elif number == 3 and wire == _BYTES:
            assert isinstance(value, bytes)
            extended = value
    return status, message, extended


# -- client responses --------------------------------------------------------------------------
def encode_batch_status(batch_id: str, status: int) -> bytes:
    """``ClientBatchStatus`` without invalid transactions."""
    return optional_bytes(1, batch_id.encode()) + optional_varint(2, status)


def encode_batch_status_response(status: int, encoded_statuses: Iterable[bytes]) -> bytes:
    """``ClientBatchStatusResponse`` from already encoded ``ClientBatchStatus`` messages."""
    return optional_varint(1, status) + b"".join(bytes_field(2, s) for s in encoded_statuses)


def encode_state_get_client_response(status: int, value: bytes = b"", state_root: str = "") -> bytes:
    """``ClientStateGetResponse``: status, value, state_root."""
    return optional_varint(1, status) + optional_bytes(2, value) + optional_bytes(3, state_root.encode())


def encode_state_list_client_response(
    status: int,
    entries: Iterable[tuple[str, bytes]] = (),
    state_root: str = "",
    paging: tuple[str, str, int] | None = None,
) -> bytes:
    """``ClientStateListResponse``: status, entries, state_root, paging (next, start, limit)."""
    body = optional_varint(1, status) + b"".join(
        bytes_field(2, optional_bytes(1, address.encode()) + optional_bytes(2, data)) for address, data in entries
    )
    body += optional_bytes(3, state_root.encode())
    if paging is not None:
        next_, start, limit = paging
        body += bytes_field(4, optional_bytes(1, next_.encode()) + optional_bytes(2, start.encode())
                            + optional_varint(3, limit))
    return body


# -- receipts -----------------------------------------------------------------------------------
STATE_SET, STATE_DELETE = 1, 2  # transaction_receipt_pb2.StateChange.Type


def encode_receipt(
    *, transaction_id: str, changes: Iterable[tuple[str, bytes | None]], events: Iterable[bytes] = (),
    data: Iterable[bytes] = (),
) -> bytes:
    """``TransactionReceipt``: state changes (None = delete), encoded events, receipt data, the id."""
    parts = []
    for address, value in changes:
        if value is None:
            change = bytes_field(1, address.encode()) + optional_varint(3, STATE_DELETE)
        else:
            change = bytes_field(1, address.encode()) + optional_bytes(2, value) + optional_varint(3, STATE_SET)
        parts.append(bytes_field(1, change))
    parts.extend(bytes_field(2, event) for event in events)
    parts.extend(bytes_field(3, blob) for blob in data)
    parts.append(optional_bytes(4, transaction_id.encode()))
    return b"".join(parts)
