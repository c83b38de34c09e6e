"""On-chain rules of TrustMesh-FL, pure: no I/O, no clock, no randomness.

Families, namespaces and address functions; canonical CBOR payload and state schemas; every
federation action as a function over a read-only state view that returns state changes and events.
Transaction processors decode, call these functions and write what they return.
"""
