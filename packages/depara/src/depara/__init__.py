"""DEPARA: deep attribution graphs for knowledge transferability (Song et al., CVPR 2020)."""
__version__ = "0.1.0"
