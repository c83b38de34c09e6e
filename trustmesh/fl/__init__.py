"""The federated-learning library shared by participants and compute nodes (DESIGN §5).

Submodules: ``data`` (datasets shipped in packages), ``partition`` (IID / Dirichlet / shards),
``models`` (the W1 model registry, safetensors files), ``train`` (local training, evaluation),
``params`` (named float32 arrays, deltas, flat views), ``codecs`` (the CBOR update/model envelope
and its hash). Nothing is imported here, so ``import trustmesh.fl.codecs`` does not pull in torch.
"""
