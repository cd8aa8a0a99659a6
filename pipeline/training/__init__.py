"""Fine-tuning parts: the data loader and training step, optimizer parameter groups, learning-rate schedules,
losses, weight selection (best on validation, moving average) and resumable state."""
