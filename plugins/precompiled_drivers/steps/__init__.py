"""One module per pipeline step: the pod spec that step runs (its "maker")."""
