"""chromactl: run Chroma in Docker with authentication that is proven, not assumed."""

__version__ = "0.1.0"
