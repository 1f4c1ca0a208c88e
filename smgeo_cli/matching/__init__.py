"""The training-free method: SIFT matches and a RANSAC homography map the click into a reference tile."""

from .detector import MatchDetector
from .features import Features, describe
from .matcher import MatchResult, match_features, match_pair
from .window import fallback_window, object_window

__all__ = [
    "Features",
    "MatchDetector",
    "MatchResult",
    "describe",
    "fallback_window",
    "match_features",
    "match_pair",
    "object_window",
]
