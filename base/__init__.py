"""What every process shares: settings, topics, errors, tokens and keys, logs, metrics, Kafka plumbing.

The bottom of the house: nothing here imports another package of the project.
"""
