"""One participant's side of secure aggregation for one round (fresh keys every round)."""
from __future__ import annotations

import hashlib
from collections.abc import Collection, Mapping

import numpy as np

from trustmesh.privacy.errors import RevealRefused, SecAggFailed, SecAggMessageInvalid
from trustmesh.privacy.secagg import crypto, shamir
from trustmesh.privacy.secagg.messages import (
    PublicKeys,
    Reveal,
    Share,
    SharePlaintext,
    decode_envelope,
    encode_envelope,
)
from trustmesh.privacy.secagg.ring import RingQuantizer
from trustmesh.privacy.secagg.roster import (
    add_pairwise_mask,
    check_roster,
    neighbourhood_indices,
    roster_graph,
    share_context,
)


class Participant:
    """Phases: advertise -> share_keys -> masked_input -> unmask_reveal. Holds its secrets in memory only.

    ``neighbours`` = k of the SecAgg+ neighbour graph (None: everyone is a neighbour). Shares, pairwise
    masks and reveals involve only this participant's neighbours; t counts its own share.
    """

    def __init__(self, *, participant_id: str, threshold: int, round_id: str, neighbours: int | None = None,
                 quantizer: RingQuantizer | None = None, rng: np.random.Generator | None = None) -> None:
        self.participant_id = participant_id
        self.threshold = threshold
        self.neighbours = neighbours
        self.round_id = round_id
        self.quantizer = quantizer or RingQuantizer()
        self._rng = rng or np.random.default_rng()
        self._enc_key = crypto.new_private_key()
        self._mask_seed = crypto.new_seed()  # what gets shared for dropout recovery (one Shamir block)
        self._mask_key = crypto.mask_key_from_seed(self._mask_seed, round_id=round_id,
                                                   participant_id=participant_id)
        self._seed = crypto.new_seed()
        self._roster: dict[str, PublicKeys] = {}
        self._own_shares: tuple[Share, Share] | None = None
        self._members: frozenset[str] = frozenset()
        self._peers: frozenset[str] = frozenset()  # neighbours in the round's graph
        self._revealed: dict[str, str] = {}  # peer -> "seed" | "key", for the whole round
        self._submitted: tuple[bytes, np.ndarray] | None = None  # (digest of the input, masked input)

    def advertise(self) -> PublicKeys:
        """Phase 0: the public keys and seed commitment to publish."""
        return PublicKeys(participant_id=self.participant_id,
                          enc_public=crypto.public_bytes(self._enc_key),
                          mask_public=crypto.public_bytes(self._mask_key),
                          seed_commitment=crypto.commit(self._seed))

    def share_keys(self, roster: Mapping[str, PublicKeys]) -> dict[str, bytes]:
        """Phase 1: Shamir-share the self-mask and mask-key seeds; one AES-GCM envelope per neighbour."""
        if roster.get(self.participant_id) != self.advertise():
            raise SecAggMessageInvalid("the roster does not hold this participant's own keys")
        check_roster(roster, self.threshold)
        graph = roster_graph(roster, self.threshold, self.neighbours, round_id=self.round_id)
        self._peers = graph[self.participant_id]
        self._roster = dict(roster)
        self._members = frozenset(roster)
        indices = neighbourhood_indices(graph, self.participant_id)
        seed_split, key_split = shamir.split_many([self._seed, self._mask_seed], self.threshold, len(indices))
        seed_shares, key_shares = dict(seed_split), dict(key_split)
        envelopes: dict[str, bytes] = {}
        for recipient, index in indices.items():
            pair = ((index, seed_shares[index]), (index, key_shares[index]))
            if recipient == self.participant_id:
                self._own_shares = pair
                continue
            plaintext = SharePlaintext(sender=self.participant_id, recipient=recipient,
                                       seed_share=pair[0], key_share=pair[1]).to_cbor()
            context = share_context(self.round_id, self.participant_id, recipient)
            key = crypto.derive_key(self._enc_key, roster[recipient].enc_public, purpose="share",
                                    context=context)
            envelopes[recipient] = encode_envelope(*crypto.seal(key, plaintext, context))
        return envelopes

    def masked_input(self, delta_vector: np.ndarray, weight: float, *,
                     members: Collection[str] | None = None) -> np.ndarray:
        """Phase 2: quantize weight*delta into Z/2^32, add the self mask and the pairwise masks.

        ``members`` is the set whose shares were delivered (default: the whole roster); the
        survivor and dropped sets of phase 3 must split it. Once per round: a retry with the same
        input gets the same bytes; a different input is refused (two inputs under one mask leak
        their difference).
        """
        if not self._roster:
            raise SecAggFailed("share_keys must run before masked_input")
        digest = hashlib.sha256(np.ascontiguousarray(delta_vector, dtype=np.float32).tobytes()
                                + repr((float(weight), sorted(members or ()))).encode()).digest()
        if self._submitted is not None:
            if self._submitted[0] != digest:
                raise SecAggFailed("a different masked input was already produced this round")
            return self._submitted[1].copy()
        if members is not None:
            chosen = frozenset(members)
            if self.participant_id not in chosen or not chosen <= frozenset(self._roster):
                raise SecAggFailed("members must include this participant and lie within the roster")
            if len(chosen) < self.threshold:
                raise SecAggFailed("fewer than t members delivered their shares")
            if len(chosen & (self._peers | {self.participant_id})) < self.threshold:
                raise SecAggFailed("fewer than t of this participant's neighbourhood delivered their shares")
            self._members = chosen
        vector = np.asarray(delta_vector, dtype=np.float64).ravel() * float(weight)
        total = self.quantizer.encode(vector, participants=len(self._members), rng=self._rng)
        pad = crypto.MaskPad(total.size)
        pad.add(total, self._seed)
        for peer in sorted(self._members & self._peers):
            add_pairwise_mask(total, pad, self._mask_key, self._roster[peer].mask_public, round_id=self.round_id,
                              me=self.participant_id, peer=peer)
        self._submitted = (digest, total.copy())
        return total

    def unmask_reveal(self, survivors: Collection[str], dropped: Collection[str],
                      ciphertexts_for_me: Mapping[str, bytes]) -> Reveal:
        """Phase 3: for each neighbour reveal the seed share (survivor) or the mask-key share (dropped), never both."""
        if self._own_shares is None or self._submitted is None:
            raise RevealRefused("this participant produced no masked input this round; it reveals nothing")
        alive, gone = frozenset(survivors), frozenset(dropped)
        both = alive & gone
        if both:
            raise RevealRefused(f"asked for both shares of {sorted(both)[0]!r}: it cannot be survivor and dropped")
        conflicts = [peer for peer in alive | gone
                     if self._revealed.get(peer, "seed" if peer in alive else "key")
                     != ("seed" if peer in alive else "key")]
        if conflicts:
            raise RevealRefused(f"the other share of {sorted(conflicts)[0]!r} was revealed earlier this round")
        if alive | gone != self._members:
            raise RevealRefused("survivors and dropped must together be exactly the round's members")
        if self.participant_id not in alive:
            raise RevealRefused("this participant is alive but listed as dropped")
        if len(alive) < self.threshold:
            raise SecAggFailed("fewer than t survivors")

        held: dict[str, tuple[Share, Share]] = {self.participant_id: self._own_shares}
        unreadable: list[str] = []
        for sender, envelope in ciphertexts_for_me.items():
            if sender not in self._members or sender not in self._peers:
                continue
            try:
                context = share_context(self.round_id, sender, self.participant_id)
                key = crypto.derive_key(self._enc_key, self._roster[sender].enc_public, purpose="share",
                                        context=context)
                plain = SharePlaintext.from_cbor(crypto.open_sealed(key, *decode_envelope(envelope), context))
                if plain.sender != sender or plain.recipient != self.participant_id:
                    raise SecAggMessageInvalid("envelope names another sender or recipient")
            except SecAggMessageInvalid:
                unreadable.append(sender)
                continue
            held[sender] = (plain.seed_share, plain.key_share)

        for peer in alive | gone:
            self._revealed[peer] = "seed" if peer in alive else "key"
        return Reveal(participant_id=self.participant_id,
                      seed_shares={peer: shares[0] for peer, shares in held.items() if peer in alive},
                      key_shares={peer: shares[1] for peer, shares in held.items() if peer in gone},
                      unreadable=tuple(sorted(unreadable)))
