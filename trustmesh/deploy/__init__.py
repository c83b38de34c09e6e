"""Deployment at scale: renderers for the docker compose file and the Kubernetes manifests.

Both renderers describe one topology (a Sawtooth PBFT network or the embedded devnet, our TPs,
a Redis Cluster, CouchDB, compute nodes, a coordinator and participants) from `topology`, so the
two deployments cannot drift apart. Nothing here talks to a Docker engine or a cluster.
"""
