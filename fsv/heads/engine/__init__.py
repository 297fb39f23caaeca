"""What runs a training run whatever its kind: configuration layers, the run folder, the training
loop and the entry sequence. Knows no head and no kind of run."""
