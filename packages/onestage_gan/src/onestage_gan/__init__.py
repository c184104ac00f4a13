"""One-stage GAN training (Shen et al., CVPR 2021): update G and D from one backward pass."""
from .gradscale import GradScale, ScaleSlot, grad_scale
from .losses import LOSSES, GanLoss, gamma_autograd, get_loss
from .method import check_exactness, one_stage_grads, one_stage_step, two_stage_grads, two_stage_step

__all__ = ["GradScale", "ScaleSlot", "grad_scale", "LOSSES", "GanLoss", "gamma_autograd", "get_loss",
           "check_exactness", "one_stage_grads", "one_stage_step", "two_stage_grads", "two_stage_step"]
