"""dreamcli: DeepDream from the command line, on GoogLeNet, fast on a GPU and usable on a CPU."""

__version__ = "0.1.0"
