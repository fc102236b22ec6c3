"""A Kubernetes-API-compatible test cluster for end-to-end tests and the demo (test support only)."""

from testcluster.cluster import TestCluster, write_kubeconfig
from testcluster.scenarios import Scenario, ScenarioResult

__all__ = ["Scenario", "ScenarioResult", "TestCluster", "write_kubeconfig"]
