"""The training-free method: SIFT matches and a RANSAC homography map the click into a reference tile."""

from .detector import MatchDetector
from .features import Features, describe
from .matcher import MatchResult, match_features, match_pair
from .window import fallback_outline, object_outline, outline_bounds

__all__ = [
    "Features",
    "MatchDetector",
    "MatchResult",
    "describe",
    "fallback_outline",
    "match_features",
    "match_pair",
    "object_outline",
    "outline_bounds",
]
