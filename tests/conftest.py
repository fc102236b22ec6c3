from harness import airflow_env

# Before any test module imports Airflow: its configuration is read once, at import.
airflow_env.configure()

pytest_plugins = ["testcluster.fixtures"]
