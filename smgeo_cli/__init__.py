"""smgeo: geo-locate an object clicked on a drone photo in a georeferenced image."""

__version__ = "0.1.0"
