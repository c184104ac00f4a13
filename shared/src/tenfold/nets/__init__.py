"""Networks: ViT with a token API, CIFAR ResNets, wide ResNets, VGGs; `create(name, num_classes)`."""
from .registry import available, create, register
from .resnet import CifarResNet
from .vgg import VGGBN, VGGBlockwise
from .vit import DropPath, VisionTransformer, flops_per_image, gather_tokens, sincos_pos_embed_2d
from .wrn import WideResNet

__all__ = ["available", "create", "register", "CifarResNet", "VGGBN", "VGGBlockwise", "VisionTransformer",
           "DropPath", "flops_per_image", "gather_tokens", "sincos_pos_embed_2d", "WideResNet"]
from .pretrained import load_teacher, teacher_meta  # noqa: E402

__all__ += ["load_teacher", "teacher_meta"]
