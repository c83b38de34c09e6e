"""TrustMesh-FL: federated learning coordinated through a Hyperledger Sawtooth ledger.

Importing this package installs the Python 3.11 replacement for the Sawtooth SDK's
``messaging.stream`` module (see :mod:`trustmesh.sdk_compat`) before anything imports
``sawtooth_sdk.processor``, so the SDK's own processor core runs unchanged.
"""
from trustmesh import sdk_compat as _sdk_compat

_sdk_compat.install()

__version__ = "0.1.0"
__all__ = ["__version__"]
