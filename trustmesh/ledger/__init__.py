"""The ledger client: keys, signed transactions and batches, and the ZMQ client of a validator."""
