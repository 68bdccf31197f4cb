"""The deployed stack: its outputs contract, the Kubernetes API, port-forwards, scaling the models for each scenario, one benchmark session, the results directory."""
