"""The aggregator's side: sum masked inputs mod 2^32, rebuild and check the secrets, strip the masks."""
from __future__ import annotations

import time
from collections.abc import Collection, Mapping

import numpy as np

from trustmesh.privacy.errors import SecAggFailed
from trustmesh.privacy.secagg import crypto, shamir
from trustmesh.privacy.secagg.messages import PublicKeys, Reveal, Share
from trustmesh.privacy.secagg.ring import RingQuantizer
from trustmesh.privacy.secagg.roster import (
    add_pairwise_mask,
    check_roster,
    neighbourhood_indices,
    roster_graph,
)


class Server:
    """Learns only the sum of the survivors' pre-weighted inputs (plus what the quantization step hides).

    ``neighbours`` = k of the SecAgg+ graph (None: complete): a dropped member's masks are removed with
    its surviving neighbours only, and each secret is rebuilt from t shares of its owner's neighbourhood.
    """

    def __init__(self, *, roster: Mapping[str, PublicKeys], threshold: int, round_id: str,
                 neighbours: int | None = None, quantizer: RingQuantizer | None = None,
                 members: Collection[str] | None = None) -> None:
        check_roster(roster, threshold)
        self.roster = dict(roster)
        self.threshold = threshold
        self.round_id = round_id
        self.graph = roster_graph(roster, threshold, neighbours, round_id=round_id)
        self.quantizer = quantizer or RingQuantizer()
        self.members = frozenset(roster if members is None else members)
        if not self.members <= frozenset(roster):
            raise SecAggFailed("members must lie within the roster")
        self._combiners: dict[tuple[int, ...], shamir.Combiner] = {}  # by share indices, for this round
        self.phase_seconds: dict[str, float] = {}  # CPU seconds of the last unmask, by step (for bench/)

    def unmask(self, masked_inputs: Mapping[str, np.ndarray], reveals: Mapping[str, Reveal]) -> np.ndarray:
        """The float32 sum of the survivors' inputs; survivors are exactly the keys of ``masked_inputs``."""
        survivors = frozenset(masked_inputs)
        if not survivors <= self.members:
            raise SecAggFailed("a masked input came from outside the round's members")
        if len(survivors) < self.threshold:
            raise SecAggFailed("fewer than t survivors")
        dropped = self.members - survivors
        reveals = {pid: reveal for pid, reveal in reveals.items()
                   if pid in survivors and reveal.participant_id == pid}
        if len(reveals) < self.threshold:
            raise SecAggFailed("fewer than t survivors revealed their shares")
        lengths = {np.asarray(vector).size for vector in masked_inputs.values()}
        if len(lengths) != 1:
            raise SecAggFailed("masked inputs differ in length")
        length = lengths.pop()

        clock = time.process_time()
        total = np.zeros(length, dtype=np.uint32)
        for pid in sorted(survivors):
            np.add(total, np.asarray(masked_inputs[pid], dtype=np.uint32), out=total)
        self.phase_seconds = {"sum": time.process_time() - clock}
        clock = time.process_time()
        pad = crypto.MaskPad(length)
        seeds = self._recover(reveals, sorted(survivors), kind="seed")
        for pid, seed in seeds.items():
            if crypto.commit(seed) != self.roster[pid].seed_commitment:
                raise SecAggFailed(f"recovered self-mask seed of {pid!r} does not match its commitment")
            pad.subtract(total, seed)
        self.phase_seconds["self_masks"] = time.process_time() - clock
        clock = time.process_time()
        for gone, mask_seed in self._recover(reveals, sorted(dropped), kind="key").items():
            mask_key = crypto.mask_key_from_seed(mask_seed, round_id=self.round_id, participant_id=gone)
            if crypto.public_bytes(mask_key) != self.roster[gone].mask_public:
                raise SecAggFailed(f"recovered mask key of {gone!r} does not match its public key")
            for pid in sorted(survivors & self.graph[gone]):
                # pid added the mask with pid's sign; the same mask seen from `gone` has the opposite sign.
                add_pairwise_mask(total, pad, mask_key, self.roster[pid].mask_public, round_id=self.round_id,
                                  me=gone, peer=pid)
        self.phase_seconds["dropout_recovery"] = time.process_time() - clock
        return self.quantizer.decode(total).astype(np.float32)

    def _recover(self, reveals: Mapping[str, Reveal], owners: list[str], *, kind: str) -> dict[str, bytes]:
        """Each owner's seed rebuilt from exactly t shares; owners whose shares sit at the same indices
        (normally all of them: the t lowest revealers) share one set of Lagrange coefficients."""
        by_indices: dict[tuple[int, ...], list[tuple[str, list[bytes]]]] = {}
        for owner in owners:
            shares = self._shares(reveals, owner, kind=kind)
            by_indices.setdefault(tuple(x for x, _ in shares), []).append((owner, [y for _, y in shares]))
        recovered: dict[str, bytes] = {}
        for indices, group in by_indices.items():
            if indices not in self._combiners:
                self._combiners[indices] = shamir.Combiner(indices)
            secrets = self._combiners[indices].combine_many([values for _, values in group])
            recovered.update((owner, secret) for (owner, _), secret in zip(group, secrets, strict=True))
        return {owner: recovered[owner] for owner in owners}

    def _shares(self, reveals: Mapping[str, Reveal], owner: str, *, kind: str) -> list[Share]:
        """Exactly t shares of ``owner``'s secret from its neighbourhood, each at its revealer's index in that
        neighbourhood (lowest indices first)."""
        found: list[Share] = []
        indices = neighbourhood_indices(self.graph, owner)
        for revealer in sorted(set(reveals) & set(indices), key=indices.__getitem__):
            table = reveals[revealer].seed_shares if kind == "seed" else reveals[revealer].key_shares
            share = table.get(owner)
            if share is not None and share[0] == indices[revealer]:
                found.append(share)
            if len(found) == self.threshold:
                return found
        raise SecAggFailed(f"fewer than t shares of the {'self-mask seed' if kind == 'seed' else 'mask key'} of "
                           f"{owner!r} ({len(found)} of {self.threshold} from its neighbourhood)")


def weighted_mean(total: np.ndarray, survivor_weights: Collection[float]) -> np.ndarray:
    """Turn the unmasked sum of pre-weighted deltas into the FedAvg delta over the survivors."""
    weight = float(sum(survivor_weights))
    if weight <= 0:
        raise SecAggFailed("survivor weights sum to zero")
    return (np.asarray(total, dtype=np.float64) / weight).astype(np.float32)
