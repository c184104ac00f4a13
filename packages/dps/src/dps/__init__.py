"""DPS: Dynamic Preference Structure embedding for temporal networks (Zheng et al., ICBK 2021).

Two neighbour samplers (time-decay TDS with per-node α, Gumbel attention GAS) feed per-sampler TGAT
attention layers whose outputs an attention fusion layer mixes; trained on temporal link prediction.
"""
import warnings

# torch_geometric imports torch.jit.script at import time; on recent torch that prints a FutureWarning
# on every CLI call, which would break the "one error line" contract of the console scripts.
warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*", category=FutureWarning)

__version__ = "0.1.0"
