"""FedMGD: federated learning under label-distribution skew with a global conditional GAN (Sheng et al., 2023)."""
__version__ = "0.1.0"
