"""MGC: multi-grained contrast between corresponding regions of two crops (Shen et al., arXiv:2407.02014)."""
from .config import EvalConfig, ModelConfig, TrainConfig
from .correspondence import multigrain_correspondence, overlap_weights, sample_view_boxes
from .method import info_nce, multigrain_loss, pool_cells
from .model import MGC, build_vit, patch_tokens
from .views import MGCViews, TwoViewBoxTransform

__version__ = "0.1.0"
__all__ = ["MGC", "ModelConfig", "TrainConfig", "EvalConfig", "build_vit", "patch_tokens", "info_nce",
           "multigrain_loss", "pool_cells", "multigrain_correspondence", "overlap_weights", "sample_view_boxes",
           "MGCViews", "TwoViewBoxTransform"]
