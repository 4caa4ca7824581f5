"""City workbench: the analysis core of the city's digital intelligence center."""

__version__ = "0.1.0"
