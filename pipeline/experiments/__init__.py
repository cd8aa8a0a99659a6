"""The learning-rate study: which runs it queues, what DVC's experiments hold, and the comparisons and verdict that
``python -m pipeline.study`` reports."""
