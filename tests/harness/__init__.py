"""The test harness: Airflow set up for tests and the demo, the simulated world a run meets, the DAG
runner, the standalone Airflow wrapper, the CRD checks and ``make demo``. Never imported by the product."""
