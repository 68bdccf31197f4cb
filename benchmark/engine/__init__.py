"""The load engine: load patterns, the protocol adapters and their one send loop, the driver, worker processes, the client self-check, crash-safe results."""
