"""Registered transaction processors: who serves which family, round robin, occupancy, liveness.

Mirrors the validator's processor manager: a TP registers per (family, version) with a
``max_occupancy`` (0 means the validator default of 10) and a header style (unset means
EXPANDED); requests go round robin to a TP of the family that has room; a TP is forgotten when it
unregisters, disconnects or stops answering pings.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from sawtooth_sdk.protobuf.processor_pb2 import TpRegisterRequest

LOGGER = logging.getLogger(__name__)

DEFAULT_MAX_OCCUPANCY = 10
MAX_SDK_PROTOCOL_VERSION = 1
"""The highest TpRegisterRequest protocol_version a 1.2 validator understands."""

Family = tuple[str, str]


@dataclass
class Processor:
    """One TP connection (its ZMQ identity) and what the devnet knows of it."""

    identity: bytes
    fd: int | None
    max_occupancy: int
    header_style: int
    families: set[Family] = field(default_factory=set)
    in_flight: set[str] = field(default_factory=set)  # correlation ids of process requests
    last_seen: float = field(default_factory=time.monotonic)
    ping_sent: float | None = None
    suspended: bool = False  # missed a ping: gets no work until it answers again
    processed: int = 0

    @property
    def has_room(self) -> bool:
        return not self.suspended and len(self.in_flight) < self.max_occupancy

    @property
    def raw_headers(self) -> bool:
        return self.header_style == TpRegisterRequest.RAW


class ProcessorRegistry:
    """Family → TPs, with round-robin choice among those that have room."""

    def __init__(self) -> None:
        self._by_identity: dict[bytes, Processor] = {}
        self._by_family: dict[Family, list[bytes]] = {}
        self._turn: dict[Family, int] = {}

    def register(self, *, identity: bytes, fd: int | None, request: TpRegisterRequest) -> Processor:
        family = (request.family, request.version)
        style = request.request_header_style or TpRegisterRequest.EXPANDED
        processor = self._by_identity.get(identity)
        if processor is None:
            processor = Processor(
                identity=identity,
                fd=fd,
                max_occupancy=request.max_occupancy or DEFAULT_MAX_OCCUPANCY,
                header_style=style,
            )
            self._by_identity[identity] = processor
        else:
            processor.fd = fd if fd is not None else processor.fd
            processor.max_occupancy = request.max_occupancy or DEFAULT_MAX_OCCUPANCY
            processor.header_style = style
        processor.families.add(family)
        members = self._by_family.setdefault(family, [])
        if identity not in members:
            members.append(identity)
        LOGGER.info(
            "registered transaction processor %s for %s %s (namespaces %s, max_occupancy %d, %s headers)",
            identity.hex()[:12], family[0], family[1], list(request.namespaces), processor.max_occupancy,
            "raw" if processor.raw_headers else "expanded",
        )
        return processor

    def unregister(self, identity: bytes) -> Processor | None:
        """Stop routing to ``identity``; its in-flight requests may still be answered."""
        processor = self._by_identity.get(identity)
        if processor is None:
            return None
        for family in processor.families:
            members = self._by_family.get(family, [])
            if identity in members:
                members.remove(identity)
            if not members:
                self._by_family.pop(family, None)
        processor.families.clear()
        return processor

    def forget(self, identity: bytes) -> Processor | None:
        """Drop ``identity`` entirely (gone); the caller re-sends its in-flight requests."""
        processor = self.unregister(identity)
        self._by_identity.pop(identity, None)
        return processor

    def get(self, identity: bytes) -> Processor | None:
        return self._by_identity.get(identity)

    def serves(self, family: Family) -> bool:
        return bool(self._by_family.get(family))

    def pick(self, family: Family) -> Processor | None:
        """The next TP of ``family`` (round robin) with room, or None."""
        members = self._by_family.get(family)
        if not members:
            return None
        start = self._turn.get(family, 0)
        for step in range(len(members)):
            identity = members[(start + step) % len(members)]
            processor = self._by_identity[identity]
            if processor.has_room:
                self._turn[family] = (start + step + 1) % len(members)
                return processor
        return None

    def on_fd(self, fd: int) -> list[Processor]:
        return [p for p in self._by_identity.values() if p.fd == fd]

    def all(self) -> list[Processor]:
        return list(self._by_identity.values())
