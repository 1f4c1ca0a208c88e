"""Defaults that both the library and the command line's help text use.

This module imports nothing, so that ``smgeo --help`` can show them without
loading the library's heavy dependencies.
"""

# Radius of the search circle around the photo's GPS ground point: the ground a
# nadir photo from 400 m sees, with room for GPS, yaw and pitch errors.
DEFAULT_SEARCH_RADIUS_M = 500.0
# A search that would take more tiles than this is refused (with the count) unless --max-tiles allows it:
# 1849 tiles of smgeo-nano took 160 s on 2 CPU cores, so this is about six minutes there.
DEFAULT_MAX_TILES = 4000
# Reference tile metres per pixel of `smgeo synth` (a coarser raster keeps its own).
DEFAULT_SYNTH_GSD_M = 0.5
# `smgeo mine` matches each photo with this many nearest photos.
DEFAULT_NEIGHBOURS = 10
# The matcher's features (`--features`): one kind, or kinds tried in turn ("+"). SIFT first: where it
# fits it is right, and it costs a fraction of the learned features' time (benchmarks/README.md).
FEATURE_CHOICES = ("sift", "xfeat", "sift+xfeat")
DEFAULT_FEATURES = "sift+xfeat"
# Headings the learned features try when the photo's heading is unknown (`--headings`). XFeat with
# LighterGlue still matches a view turned up to about 45 degrees from north; 8 headings found 2 points
# more objects across years at twice the cost (benchmarks/README.md), so 4 is the default.
DEFAULT_HEADINGS = 4
# How `smgeo train --teacher` learns from XFeat (smgeo_cli/train/teacher.py); "none" trains without it.
TEACHER_ROUTES = ("none", "distil", "match")
