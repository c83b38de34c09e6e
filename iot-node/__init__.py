"""IoT nodes: the coordinator that registers a workflow and opens its rounds, and participants that
train on their own data and submit deltas to the shared round (`schedule_id`)."""
