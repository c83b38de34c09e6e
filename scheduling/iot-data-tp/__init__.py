"""The iot-data transaction processor: checks a submission against the chain, appends it to the
round's Redis list exactly once per transaction, and records it in the round's submission index."""
