"""harmonykit: deep image harmonization (CharmNet, iDIH) as a plugin library."""
__version__ = "0.1.0"
