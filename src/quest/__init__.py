"""quest: does a neural network beat the classic models on this tabular dataset?"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("quest")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"
