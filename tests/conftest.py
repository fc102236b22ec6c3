pytest_plugins = ["testcluster.fixtures"]
