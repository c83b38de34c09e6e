"""The client's side of the validator exchange, against an in-process fake ROUTER."""
from __future__ import annotations

import threading
import time

import pytest
from ledger_fakes import FakeValidator, Received
from sawtooth_sdk.protobuf import client_batch_submit_pb2 as submit_pb2
from sawtooth_sdk.protobuf import client_state_pb2
from sawtooth_sdk.protobuf.validator_pb2 import Message

from trustmesh.errors import LedgerError, LedgerTimeout, TransactionRejected
from trustmesh.ledger.batch import make_batch, make_transaction
from trustmesh.ledger.client import BatchInvalid, LedgerClient
from trustmesh.ledger.keys import new_signer
from trustmesh.net import free_port

Submit = submit_pb2.ClientBatchSubmitResponse
Status = submit_pb2.ClientBatchStatus
StatusResponse = submit_pb2.ClientBatchStatusResponse


@pytest.fixture
def validator():
    fake = FakeValidator().start()
    yield fake
    fake.stop()


@pytest.fixture
def client(validator):
    with LedgerClient(urls=[validator.url], timeout=3.0) as ledger:
        yield ledger


def _batch():
    signer = new_signer()
    txn = make_transaction(
        signer, family_name="tm-kv", family_version="1.0", payload=b"set a 1", inputs=["abc"], outputs=["abc"]
    )
    return make_batch(signer, [txn])


def _submit_ok(_: Received):
    return Message.CLIENT_BATCH_SUBMIT_RESPONSE, Submit(status=Submit.OK).SerializeToString()


def _statuses(status: int, message: str = ""):
    def answer(received: Received):
        request = submit_pb2.ClientBatchStatusRequest.FromString(received.message.content)
        statuses = []
        for batch_id in request.batch_ids:
            entry = Status(batch_id=batch_id, status=status)
            if status == Status.INVALID:
                entry.invalid_transactions.add(transaction_id="t" * 128, message=message)
            statuses.append(entry)
        response = StatusResponse(status=StatusResponse.OK, batch_statuses=statuses)
        return Message.CLIENT_BATCH_STATUS_RESPONSE, response.SerializeToString()

    return answer


def test_submit_waits_for_commit_with_a_validator_side_wait(validator, client):
    validator.on(Message.CLIENT_BATCH_SUBMIT_REQUEST, _submit_ok)
    validator.on(Message.CLIENT_BATCH_STATUS_REQUEST, _statuses(Status.COMMITTED))
    batch = _batch()

    [status] = client.submit([batch], wait=5)

    assert status.batch_id == batch.header_signature and status.committed
    [sent] = validator.of_type(Message.CLIENT_BATCH_SUBMIT_REQUEST)
    request = submit_pb2.ClientBatchSubmitRequest.FromString(sent.message.content)
    assert [b.header_signature for b in request.batches] == [batch.header_signature]
    [asked] = validator.of_type(Message.CLIENT_BATCH_STATUS_REQUEST)
    status_request = submit_pb2.ClientBatchStatusRequest.FromString(asked.message.content)
    assert status_request.wait and 1 <= status_request.timeout <= 5  # never 0: that means 300 s
    ids = [r.message.correlation_id for r in validator.received]
    assert len(set(ids)) == len(ids) and all(ids)


def test_submit_keeps_polling_while_pending(validator, client):
    answers = iter([Status.PENDING, Status.PENDING, Status.COMMITTED])
    validator.on(Message.CLIENT_BATCH_SUBMIT_REQUEST, _submit_ok)
    validator.on(Message.CLIENT_BATCH_STATUS_REQUEST, lambda r: _statuses(next(answers))(r))

    [status] = client.submit([_batch()], wait=10)

    assert status.committed
    assert len(validator.of_type(Message.CLIENT_BATCH_STATUS_REQUEST)) == 3


def test_submit_without_wait_returns_pending_and_asks_nothing_more(validator, client):
    validator.on(Message.CLIENT_BATCH_SUBMIT_REQUEST, _submit_ok)

    [status] = client.submit([_batch()], wait=None)

    assert status.status == "PENDING"
    assert validator.of_type(Message.CLIENT_BATCH_STATUS_REQUEST) == []


def test_invalid_batch_at_submit_is_rejected(validator, client):
    validator.on(
        Message.CLIENT_BATCH_SUBMIT_REQUEST,
        lambda _: (Message.CLIENT_BATCH_SUBMIT_RESPONSE, Submit(status=Submit.INVALID_BATCH).SerializeToString()),
    )
    with pytest.raises(TransactionRejected, match="refused at submit"):
        client.submit([_batch()])


def test_invalid_status_raises_with_the_processors_message(validator, client):
    validator.on(Message.CLIENT_BATCH_SUBMIT_REQUEST, _submit_ok)
    validator.on(Message.CLIENT_BATCH_STATUS_REQUEST, _statuses(Status.INVALID, "key k is frozen"))

    with pytest.raises(TransactionRejected, match="key k is frozen") as caught:
        client.submit([_batch()])
    assert isinstance(caught.value, BatchInvalid)
    assert caught.value.reason == "key k is frozen" and caught.value.transaction_id == "t" * 128
    # batch_status itself reports INVALID without raising
    [status] = client.batch_status(["b" * 128])
    assert status.status == "INVALID" and status.invalid_transactions[0].message == "key k is frozen"


def test_queue_full_is_retried(validator, client):
    answers = iter([Submit.QUEUE_FULL, Submit.QUEUE_FULL, Submit.OK])
    validator.on(
        Message.CLIENT_BATCH_SUBMIT_REQUEST,
        lambda _: (Message.CLIENT_BATCH_SUBMIT_RESPONSE, Submit(status=next(answers)).SerializeToString()),
    )
    validator.on(Message.CLIENT_BATCH_STATUS_REQUEST, _statuses(Status.COMMITTED))

    [status] = client.submit([_batch()], wait=10)

    assert status.committed
    assert len(validator.of_type(Message.CLIENT_BATCH_SUBMIT_REQUEST)) == 3


def test_get_state_value_and_absence(validator, client):
    Response = client_state_pb2.ClientStateGetResponse
    store = {"aa" * 35: b"v1"}

    def answer(received: Received):
        address = client_state_pb2.ClientStateGetRequest.FromString(received.message.content).address
        if address in store:
            response = Response(status=Response.OK, value=store[address], state_root="r" * 64)
        else:
            response = Response(status=Response.NO_RESOURCE)
        return Message.CLIENT_STATE_GET_RESPONSE, response.SerializeToString()

    validator.on(Message.CLIENT_STATE_GET_REQUEST, answer)

    assert client.get_state("aa" * 35) == b"v1"
    assert client.get_state("bb" * 35) is None


def test_list_state_pages_through_one_state_root(validator, client):
    Response = client_state_pb2.ClientStateListResponse
    entries = [(f"abcdef{i:064x}", bytes([i])) for i in range(5)]

    def answer(received: Received):
        request = client_state_pb2.ClientStateListRequest.FromString(received.message.content)
        chosen = [e for e in entries if e[0].startswith(request.address)]
        index = [a for a, _ in chosen].index(request.paging.start) if request.paging.start else 0
        page = chosen[index : index + request.paging.limit]
        following = chosen[index + request.paging.limit : index + request.paging.limit + 1]
        response = Response(status=Response.OK, state_root="f" * 64)
        response.entries.extend(Response.Entry(address=a, data=d) for a, d in page)
        response.paging.start = page[0][0]
        response.paging.limit = request.paging.limit
        response.paging.next = following[0][0] if following else ""
        return Message.CLIENT_STATE_LIST_RESPONSE, response.SerializeToString()

    validator.on(Message.CLIENT_STATE_LIST_REQUEST, answer)

    assert list(client.list_state("abcdef", page_size=2)) == entries
    requests = [
        client_state_pb2.ClientStateListRequest.FromString(r.message.content)
        for r in validator.of_type(Message.CLIENT_STATE_LIST_REQUEST)
    ]
    assert len(requests) == 3
    assert [r.state_root for r in requests] == ["", "f" * 64, "f" * 64]


def test_list_state_of_an_empty_prefix_is_empty(validator, client):
    Response = client_state_pb2.ClientStateListResponse
    validator.on(
        Message.CLIENT_STATE_LIST_REQUEST,
        lambda _: (Message.CLIENT_STATE_LIST_RESPONSE, Response(status=Response.NO_RESOURCE).SerializeToString()),
    )
    assert list(client.list_state("123456")) == []


def test_a_silent_validator_times_out(validator):
    with LedgerClient(urls=[validator.url], timeout=0.5) as client:
        with pytest.raises(LedgerTimeout):
            client.get_state("aa" * 35)


def test_nothing_listening_is_a_ledger_error_not_a_hang():
    with LedgerClient(urls=[f"127.0.0.1:{free_port()}"], timeout=0.5) as client:
        with pytest.raises(LedgerError):
            client.get_state("aa" * 35)


def test_failover_skips_a_dead_url_and_remembers_it(validator):
    Response = client_state_pb2.ClientStateGetResponse
    validator.on(
        Message.CLIENT_STATE_GET_REQUEST,
        lambda _: (Message.CLIENT_STATE_GET_RESPONSE, Response(status=Response.OK, value=b"x").SerializeToString()),
    )
    dead = f"tcp://127.0.0.1:{free_port()}"
    with LedgerClient(urls=[dead, validator.url], timeout=3.0) as client:
        assert client.get_state("aa" * 35) == b"x"
        for _ in range(3):  # round-robin would put the dead URL first every other time
            assert client.url_order() == [validator.url, dead]
        assert client.get_state("aa" * 35) == b"x"


def test_round_robin_spreads_requests_over_live_validators():
    Response = client_state_pb2.ClientStateGetResponse
    fakes = [FakeValidator().start() for _ in range(2)]
    try:
        for fake in fakes:
            fake.on(
                Message.CLIENT_STATE_GET_REQUEST,
                lambda _: (Message.CLIENT_STATE_GET_RESPONSE, Response(status=Response.NO_RESOURCE).SerializeToString()),
            )
        with LedgerClient(urls=[f.url for f in fakes], timeout=2.0) as client:
            for _ in range(4):
                client.get_state("aa" * 35)
        assert [len(f.received) for f in fakes] == [2, 2]
    finally:
        for fake in fakes:
            fake.stop()


def test_pings_are_answered(validator, client):
    validator.on(
        Message.CLIENT_STATE_GET_REQUEST,
        lambda _: (
            Message.CLIENT_STATE_GET_RESPONSE,
            client_state_pb2.ClientStateGetResponse(status=2).SerializeToString(),
        ),
    )
    with pytest.raises(LedgerError):
        client.get_state("aa" * 35)  # INTERNAL_ERROR answer: opens the connection
    [identity] = validator.identities()
    validator.push(identity, Message.PING_REQUEST, b"", correlation_id="ping-1")
    deadline = time.monotonic() + 3
    while not validator.of_type(Message.PING_RESPONSE) and time.monotonic() < deadline:
        time.sleep(0.01)
    [pong] = validator.of_type(Message.PING_RESPONSE)
    assert pong.message.correlation_id == "ping-1"


def test_a_request_cut_by_a_validator_restart_is_sent_again():
    Response = client_state_pb2.ClientStateGetResponse
    first = FakeValidator().start()  # takes the request and never answers
    result: list[object] = []
    with LedgerClient(urls=[first.url], timeout=5.0) as client:
        worker = threading.Thread(target=lambda: result.append(client.get_state("aa" * 35)))
        worker.start()
        deadline = time.monotonic() + 5
        while not first.received and time.monotonic() < deadline:
            time.sleep(0.01)
        first.stop()
        second = FakeValidator(port=first.port)
        second.on(
            Message.CLIENT_STATE_GET_REQUEST,
            lambda _: (Message.CLIENT_STATE_GET_RESPONSE, Response(status=Response.OK, value=b"y").SerializeToString()),
        )
        second.start()
        worker.join(10)
        second.stop()
    assert result == [b"y"]


def test_list_state_goes_on_at_the_head_when_the_old_root_is_gone(validator, client):
    Response = client_state_pb2.ClientStateListResponse
    entries = [(f"abcdef{i:064x}", bytes([i])) for i in range(4)]

    def answer(received: Received):
        request = client_state_pb2.ClientStateListRequest.FromString(received.message.content)
        if request.state_root == "0" * 64:
            return Message.CLIENT_STATE_LIST_RESPONSE, Response(status=Response.NO_ROOT).SerializeToString()
        index = [a for a, _ in entries].index(request.paging.start) if request.paging.start else 0
        page = entries[index : index + 2]
        response = Response(status=Response.OK, state_root="0" * 64)
        response.entries.extend(Response.Entry(address=a, data=d) for a, d in page)
        response.paging.next = entries[index + 2][0] if index + 2 < len(entries) else ""
        return Message.CLIENT_STATE_LIST_RESPONSE, response.SerializeToString()

    validator.on(Message.CLIENT_STATE_LIST_REQUEST, answer)

    assert list(client.list_state("abcdef", page_size=2)) == entries


def test_concurrent_requests_each_get_their_own_answer(validator, client):
    Response = client_state_pb2.ClientStateGetResponse

    def echo(received: Received):
        address = client_state_pb2.ClientStateGetRequest.FromString(received.message.content).address
        return Message.CLIENT_STATE_GET_RESPONSE, Response(status=Response.OK, value=address.encode()).SerializeToString()

    validator.on(Message.CLIENT_STATE_GET_REQUEST, echo)
    results: dict[str, bytes | None] = {}
    errors: list[BaseException] = []

    def ask(index: int) -> None:
        for round_ in range(10):
            address = f"{index:02x}{round_:02x}" * 17 + "ab"
            try:
                results[address] = client.get_state(address)
            except BaseException as exc:  # collected for the assertion below
                errors.append(exc)

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert errors == []
    assert len(results) == 80 and all(value == address.encode() for address, value in results.items())
