"""On-chain rules of TrustMesh-FL, pure: no I/O, no clock, no randomness.

Families, namespaces and address functions; canonical CBOR payload and state schemas; every
federation action as a function over a read-only state view that returns state changes and events.
Transaction processors decode, call these functions and write what they return.

Modules: ``families`` (names, versions, namespaces), ``addresses`` (one function per record),
``cbor`` (canonical encode, hostile-safe decode), ``records`` (payload and state schemas),
``view`` (StateView, block time from BlockInfo), ``rules`` (apply_federation, apply_submission,
declared_addresses), ``payloads`` and ``state`` (client helpers), ``workflow`` (workflow JSON files).
"""
