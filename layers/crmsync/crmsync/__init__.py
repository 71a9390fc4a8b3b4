"""crmsync's core: the code every Lambda function runs (domain, connectors, stores, services)."""

__version__ = "0.1.0"
