"""smgeo for QGIS: a Processing provider over the installed smgeo library (see metadata.txt)."""


def classFactory(iface):
    """QGIS's entry point: the plugin object (the provider does not use ``iface``)."""
    from .plugin import SmgeoPlugin

    return SmgeoPlugin()
