"""devnet: TrustMesh-FL's embedded single-node ledger speaking the Sawtooth 1.2 validator protocol.

TPs and clients written for a real validator's component endpoint work against it unchanged.
Run it with ``trustmesh devnet --bind tcp://127.0.0.1:4004 --data DIR`` (or ``python -m
trustmesh.devnet``), or from Python with :class:`trustmesh.devnet.launch.DevnetProcess`.
See docs/ledger.md for what it does and does not do compared with a Sawtooth network.
"""
