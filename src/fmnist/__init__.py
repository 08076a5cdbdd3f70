"""fmnist: train, compare and explain image classifiers on Fashion-MNIST and its kin."""

__version__ = "0.1.0"
