"""The one timm function mrla-nas uses that timm exports nowhere public: ``feature_take_indices``
(``timm.models._features``), which turns ``forward_intermediates``' ``indices`` argument into the
indices to return and the last one to run. timm's own ResNet and VisionTransformer call it; ours call
it too, so that the same ``indices`` mean the same intermediates as in timm's models.
``tests/test_private_apis.py`` fails when timm moves or changes it."""
from timm.models._features import feature_take_indices

__all__ = ["feature_take_indices"]
