"""The releases wing: how the pipeline learns of new OpenShift releases (pure parts first, Airflow last).

- ``graph``: the update graph (Cincinnati v1) as data and the rules that read it (channel, look-ahead).
- ``client``: the graph's HTTP client, the only part that talks to the network.
- ``seen``: what was already reported (the seen-store's content) and one poll of the followed channels.
- ``variables``: the Airflow Variables that configure the wing, the Asset's name and its state key.
- ``trigger``: the triggerer's ``NewReleaseTrigger`` (imports its settings at module level).
- ``schedule``: the watched Asset, the DAG's schedule, events -> targets, the cron poll, the look-ahead.

Each module imports only those above it: no circle.
"""
