"""A secure-aggregation round driver for the tests: messages go through CBOR bytes as on the wire."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest

from trustmesh.privacy.secagg import (
    Participant,
    PublicKeys,
    Reveal,
    Server,
    decode_masked_input,
    encode_masked_input,
)

ROUND = "wf-test:round-1"


@dataclass
class SecAggRound:
    """The participants, the roster and the envelopes of one round after phases 0 and 1."""

    participants: dict[str, Participant]
    roster: dict[str, PublicKeys]
    envelopes: dict[str, dict[str, bytes]]  # sender -> recipient -> bytes
    threshold: int

    def inbox(self, recipient: str) -> dict[str, bytes]:
        return {sender: out[recipient] for sender, out in self.envelopes.items() if recipient in out}

    def server(self) -> Server:
        return Server(roster=self.roster, threshold=self.threshold, round_id=ROUND)

    def run(self, vectors: dict[str, np.ndarray], weights: dict[str, float],
            dropped: set[str]) -> np.ndarray:
        """Phases 2 and 3 with ``dropped`` gone after sharing; returns the server's unmasked sum."""
        survivors = set(self.participants) - dropped
        masked = {pid: decode_masked_input(encode_masked_input(
            self.participants[pid].masked_input(vectors[pid], weights[pid]))) for pid in survivors}
        reveals = {pid: Reveal.from_cbor(self.participants[pid].unmask_reveal(
            survivors, dropped, self.inbox(pid)).to_cbor()) for pid in survivors}
        return self.server().unmask(masked, reveals)


@pytest.fixture
def secagg_round() -> Callable[..., SecAggRound]:
    def build(n: int, threshold: int, *, seed: int = 0) -> SecAggRound:
        participants = {f"node-{i:02d}": Participant(participant_id=f"node-{i:02d}", threshold=threshold,
                                                     round_id=ROUND, rng=np.random.default_rng(seed + i))
                        for i in range(n)}
        roster = {pid: PublicKeys.from_cbor(p.advertise().to_cbor()) for pid, p in participants.items()}
        envelopes = {pid: p.share_keys(roster) for pid, p in participants.items()}
        return SecAggRound(participants=participants, roster=roster, envelopes=envelopes,
                           threshold=threshold)
    return build
