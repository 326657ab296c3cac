"""filedock: a file and JSON document API server."""

__version__ = "0.1.0"
