"""The fleet as configuration: PRECOMPILED_DRIVERS_CLUSTERS read, validated and ordered into waves."""

from __future__ import annotations

import json

import pytest

from precompiled_drivers import fleet
from precompiled_drivers.fleet import Cluster
from precompiled_drivers.settings import Settings
from precompiled_drivers.validation import ValidationError

THREE = [
    {"name": "prod-b", "conn_id": "k8s_prod_b", "channel": "stable-4.18", "wave": 2},
    {"name": "dev", "conn_id": "k8s_dev", "channel": "fast-4.18", "wave": 1},
    {
        "name": "prod-a",
        "conn_id": "k8s_prod_a",
        "channel": "stable-4.18",
        "wave": 2,
        "target_repository": "quay.io/acme/prod",
    },
]


def settings_with(clusters: object) -> Settings:
    raw = clusters if isinstance(clusters, str) else json.dumps(clusters)
    return Settings.from_env({"PRECOMPILED_DRIVERS_CLUSTERS": raw})


def refusal(clusters: object) -> ValidationError:
    with pytest.raises(ValidationError) as err:
        settings_with(clusters).validate()
    return err.value


def test_unset_is_the_one_default_cluster_on_the_configured_connection() -> None:
    assert Settings().validate().fleet() == (Cluster("default", "kubernetes_default"),)
    custom = Settings.from_env({"PRECOMPILED_DRIVERS_KUBERNETES_CONN_ID": "ocp_lab"}).validate()
    [only] = custom.fleet()
    assert (only.name, only.conn_id, only.channel, only.wave, only.target_repository) == (
        "default",
        "ocp_lab",
        "",
        1,
        "",
    )
    assert fleet.is_default(custom.fleet())


def test_a_fleet_is_read_validated_and_ordered_by_wave_then_name() -> None:
    clusters = settings_with(THREE).validate().fleet()
    assert [(c.name, c.wave) for c in clusters] == [("dev", 1), ("prod-a", 2), ("prod-b", 2)]
    assert clusters[1].target_repository == "quay.io/acme/prod"
    assert clusters[0].channel == "fast-4.18"
    assert not fleet.is_default(clusters)
    assert [Cluster.from_dict(c.to_dict()) for c in clusters] == list(clusters)


def test_waves_in_order_with_their_clusters_in_parallel() -> None:
    waves = fleet.waves(settings_with(THREE).fleet())
    assert [(w.number, w.names) for w in waves] == [(1, ("dev",)), (2, ("prod-a", "prod-b"))]


def test_wave_and_channel_default_when_left_out() -> None:
    [cluster] = settings_with([{"name": "lab", "conn_id": "k8s_lab"}]).fleet()
    assert (cluster.wave, cluster.channel, cluster.target_repository) == (1, "", "")


@pytest.mark.parametrize(
    ("clusters", "field", "words"),
    [
        ("[{", "PRECOMPILED_DRIVERS_CLUSTERS", "not JSON"),
        ("[]", "PRECOMPILED_DRIVERS_CLUSTERS", "unset it for the one cluster"),
        ({"name": "dev"}, "PRECOMPILED_DRIVERS_CLUSTERS", "non-empty JSON list"),
        (["dev"], "PRECOMPILED_DRIVERS_CLUSTERS[0]", "a cluster object"),
        ([{"name": "dev"}], "PRECOMPILED_DRIVERS_CLUSTERS[0].conn_id", "missing"),
        ([{"conn_id": "k"}], "PRECOMPILED_DRIVERS_CLUSTERS[0].name", "missing"),
        ([{"name": "Dev_1", "conn_id": "k"}], "PRECOMPILED_DRIVERS_CLUSTERS[0].name", "DNS-1123 label"),
        ([{"name": "dev", "conn_id": "k8s dev"}], "PRECOMPILED_DRIVERS_CLUSTERS[0].conn_id", "whitespace"),
        ([{"name": "dev", "conn_id": "k;x"}], "PRECOMPILED_DRIVERS_CLUSTERS[0].conn_id", "metacharacter"),
        (
            [{"name": "dev", "conn_id": "k", "chanel": "stable-4.18"}],
            "PRECOMPILED_DRIVERS_CLUSTERS[0].chanel",
            "unknown key",
        ),
        (
            [{"name": "dev", "conn_id": "k", "channel": "stable"}],
            "PRECOMPILED_DRIVERS_CLUSTERS[0].channel",
            "stable-4.18",
        ),
        ([{"name": "dev", "conn_id": "k", "wave": 0}], "PRECOMPILED_DRIVERS_CLUSTERS[0].wave", "1 to 10"),
        ([{"name": "dev", "conn_id": "k", "wave": True}], "PRECOMPILED_DRIVERS_CLUSTERS[0].wave", "boolean"),
        (
            [{"name": "dev", "conn_id": "k", "target_repository": "Quay.io/ACME"}],
            "PRECOMPILED_DRIVERS_CLUSTERS[0].target_repository",
            "registry host",
        ),
        (
            [{"name": "dev", "conn_id": "a"}, {"name": "dev", "conn_id": "b"}],
            "PRECOMPILED_DRIVERS_CLUSTERS[1].name",
            "PRECOMPILED_DRIVERS_CLUSTERS[0] has it already",
        ),
        (
            [{"name": "dev", "conn_id": "a"}, {"name": "qa", "conn_id": "a"}],
            "PRECOMPILED_DRIVERS_CLUSTERS[1].conn_id",
            "patch it twice",
        ),
        (
            [{"name": "dev", "conn_id": "a", "wave": 1}, {"name": "qa", "conn_id": "b", "wave": 3}],
            "PRECOMPILED_DRIVERS_CLUSTERS[].wave",
            "without a gap",
        ),
        (
            [{"name": f"c{i}", "conn_id": f"k{i}"} for i in range(fleet.CLUSTERS_MAX + 1)],
            "PRECOMPILED_DRIVERS_CLUSTERS",
            f"at most {fleet.CLUSTERS_MAX}",
        ),
    ],
)
def test_a_bad_fleet_is_refused_naming_field_value_and_fix(clusters: object, field: str, words: str) -> None:
    err = refusal(clusters)
    assert err.field == field, str(err)
    assert words in str(err), str(err)
    assert str(err).startswith(f"{field}: got "), str(err)


def test_a_bad_default_connection_is_named_by_its_own_variable() -> None:
    with pytest.raises(ValidationError) as err:
        Settings.from_env({"PRECOMPILED_DRIVERS_KUBERNETES_CONN_ID": "-k8s"}).validate()
    assert err.value.field == "PRECOMPILED_DRIVERS_KUBERNETES_CONN_ID"


def test_followers_per_channel_each_channel_polled_once() -> None:
    clusters = settings_with([*THREE, {"name": "lab", "conn_id": "k8s_lab", "wave": 1}]).fleet()
    # dev, lab, prod-a, prod-b: lab has no channel, so it follows the Variable's; stable-4.18 once.
    assert fleet.channels_to_poll(clusters, ["stable-4.18", "eus-4.16"]) == (
        "fast-4.18",
        "stable-4.18",
        "eus-4.16",
    )
    channels, followers = fleet.poll_plan(clusters, ["stable-4.18", "eus-4.16"])
    assert channels == ("fast-4.18", "stable-4.18", "eus-4.16")
    assert followers == {
        "fast-4.18": ("dev",),
        "stable-4.18": ("lab", "prod-a", "prod-b"),
        "eus-4.16": ("lab",),
    }


def test_a_fleet_whose_clusters_name_their_channels_polls_only_those() -> None:
    clusters = settings_with(THREE).fleet()
    assert fleet.poll_plan(clusters, ["eus-4.16"]) == (
        ("fast-4.18", "stable-4.18"),
        {"fast-4.18": ("dev",), "stable-4.18": ("prod-a", "prod-b")},
    )


def test_the_default_cluster_polls_the_variables_channels_and_names_no_cluster() -> None:
    assert fleet.poll_plan(Settings().fleet(), ["stable-4.18", "fast-4.19"]) == (
        ("stable-4.18", "fast-4.19"),
        None,
    )


def test_repository_of_a_cluster() -> None:
    dev, prod_a, _ = settings_with(THREE).fleet()
    assert fleet.repository_of(dev, "quay.io/acme/nvidia") == "quay.io/acme/nvidia"
    assert fleet.repository_of(prod_a, "quay.io/acme/nvidia") == "quay.io/acme/prod"
