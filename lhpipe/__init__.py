"""lhpipe: declarative pipelines into and out of LittleHorse."""

__version__ = "0.1.0"
