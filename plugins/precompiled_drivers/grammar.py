"""Every input shape of the pipeline, written once: pattern, what to say when a value misses it, example.

Each :class:`Grammar` is the one owner of a shape. ``validation`` compiles it (``re.fullmatch``, after its
own checks for whitespace, control and non-ASCII characters) and names ``expected`` in its refusals;
``form`` puts :meth:`Grammar.schema` into the trigger form's JSON Schema; ``naming``, ``plan``,
``cluster_policy`` and the ``releases`` wing read values with it. Both engines read the same expression,
so it is written for both: Python ``re`` (what jsonschema, and so Airflow's ``Param``, uses) and
ECMAScript. ``[0-9]`` on purpose, never ``\\d``: in Python ``\\d`` also matches fullwidth and
Arabic-Indic digits, and a schema pattern has no earlier ASCII check to stop them.

The words and aliases that are not patterns (architectures, boolean words) live here too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property

from precompiled_drivers import ocp_version

# Lengths (characters) the validators allow.
SHORT_MAX = 64
NAME_MAX = 253
LABEL_MAX = 63
REF_MAX = 512
GIT_REF_MAX = 255
IMAGE_NAME_MAX = 128


@dataclass(frozen=True)
class Grammar:
    """One input shape: ``core`` (a regex both engines read), the ``expected`` form, an example, a length."""

    core: str
    expected: str
    example: str
    max_len: int = SHORT_MAX

    @cached_property
    def regex(self) -> re.Pattern[str]:
        """``core`` compiled for Python (ASCII classes); use ``fullmatch``."""
        return re.compile(self.core, re.ASCII)

    def matches(self, value: object) -> bool:
        """True when ``value`` is a string of this shape (whole value, within ``max_len``)."""
        if not isinstance(value, str) or len(value) > self.max_len:
            return False
        return self.regex.fullmatch(value) is not None

    def schema_pattern(self, *, optional: bool = False) -> str:
        """The JSON Schema ``pattern`` for a whole value (``optional`` also accepts ``""``)."""
        return anchored(self.core, optional=optional)

    def schema(self, *, optional: bool = False) -> dict[str, object]:
        """The JSON Schema keywords of a string field of this shape: ``pattern`` and ``maxLength``."""
        return {"pattern": self.schema_pattern(optional=optional), "maxLength": self.max_len}


def anchored(core: str, *, optional: bool = False) -> str:
    """``core`` as a whole-value JSON Schema pattern (schema patterns search; they don't fullmatch).

    ``$(?!\\n)``: Python's ``$`` also matches before a final newline, which would let ``"570.158.01\\n"``
    through. ``optional`` also accepts the empty string (an API caller's way to say "default").
    """
    body = f"(?:{core})?" if optional else f"(?:{core})"
    return f"^{body}$(?!\\n)"


# ----------------------------------------------------------------------------- versions

# OpenShift release: the grammar and its semver order live in ocp_version.py (4.y.z[-ec|fc|rc.N]).
OCP_VERSION = Grammar(ocp_version.SCHEMA_CORE, ocp_version.EXPECTED, "4.18.3")
# NVIDIA datacenter driver: NNN.NN.NN or NNN.NNN.NN (570.158.01).
DRIVER_VERSION = Grammar(
    r"[0-9]{3}\.[0-9]{2,3}\.[0-9]{2}", "a driver version like 570.158.01 (NNN.NN.NN)", "570.158.01"
)
# CUDA x.y.z: it names the nvcr.io/nvidia/cuda base image tag (12.8.1).
CUDA_VERSION = Grammar(r"[0-9]{1,2}\.[0-9]{1,2}\.[0-9]{1,2}", "a CUDA version like 12.8.1", "12.8.1")
# GPU Operator release, with or without its leading v (v26.7.0, 26.7.0, v25.10.0-rc.1).
OPERATOR_VERSION = Grammar(
    r"v?[0-9]{1,3}\.[0-9]{1,3}(?:\.[0-9]{1,3})?(?:-[0-9A-Za-z]+(?:\.[0-9A-Za-z]+)*)?",
    "a GPU Operator version like v26.7.0, or empty to detect it",
    "v26.7.0",
)
# RHEL x.y as the Driver Toolkit's RHEL_VERSION says it (9.4): the OS labels and build directory need both.
RHEL_VERSION = Grammar(r"[0-9]{1,2}\.[0-9]{1,2}", "a RHEL version like 9.4", "9.4")
# An update channel with its minor (openshift/cincinnati-graph-data channels/): stable-4.18, eus-4.16.
CHANNEL_KINDS = ("candidate", "fast", "stable", "eus")
CHANNEL = Grammar(
    rf"(?:{'|'.join(CHANNEL_KINDS)})-[0-9]{{1,2}}\.[0-9]{{1,3}}",
    "a channel like stable-4.18 (candidate|fast|stable|eus-<major>.<minor>)",
    "stable-4.18",
)

# ----------------------------------------------------------------------------- architectures

# Pipeline arches: OpenShift release image suffixes and NVIDIA's BUILD_ARCH (uname -m names).
ARCHES = ("x86_64", "aarch64")
# The Go/Kubernetes names (kubernetes.io/arch, the update graph's arch) of each pipeline arch.
GO_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}
# The Go names are accepted as input for the pipeline arch they stand for.
ARCH_ALIASES = {go: arch for arch, go in GO_ARCH.items()}
ARCH_EXPECTED = "x86_64 or aarch64 (amd64/arm64 accepted)"


def canonical_arch(value: object) -> str | None:
    """The pipeline arch ``value`` names (``amd64`` -> ``x86_64``), or None when it names none."""
    if not isinstance(value, str):
        return None
    arch = ARCH_ALIASES.get(value, value)
    return arch if arch in ARCHES else None


# ----------------------------------------------------------------------------- kernels

# A full kernel as uname/the DTK print it (`...el9_4.aarch64+64k`) or NFD labels it (`..._64k`, `+`->`_`).
KERNEL_PARTS = (
    r"(?P<base>[0-9]{1,2}\.[0-9]{1,3}\.[0-9]{1,4}-[0-9A-Za-z_.]+?)"
    rf"\.(?P<arch>{'|'.join(ARCHES)})(?:[+_](?P<variant>64k|rt))?"
)
KERNEL = Grammar(
    re.sub(r"\?P<[a-z]+>", "?:", KERNEL_PARTS),
    "a full kernel like 5.14.0-427.37.1.el9_4.x86_64 (arch x86_64/aarch64, optional +64k/_64k or +rt/_rt)",
    "5.14.0-427.37.1.el9_4.x86_64",
    100,
)

# ----------------------------------------------------------------------------- names and references

# Kubernetes DNS-1123 label (namespaces) and subdomain (most object names), k8s.io/apimachinery validation.
DNS_LABEL_CORE = r"[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?"
DNS_LABEL = Grammar(
    DNS_LABEL_CORE,
    "a DNS-1123 label like nvidia-gpu-operator (lowercase a-z, 0-9, '-', <= 63 chars)",
    "nvidia-gpu-operator",
    LABEL_MAX,
)
DNS_SUBDOMAIN = Grammar(
    rf"{DNS_LABEL_CORE}(?:\.{DNS_LABEL_CORE})*",
    "a DNS-1123 name like gpu-cluster-policy (lowercase a-z, 0-9, '-', '.')",
    "gpu-cluster-policy",
    NAME_MAX,
)
# An NVIDIADriver resource's name (cluster-scoped custom resource: a DNS-1123 subdomain), e.g. the form's
# canary_pool.
NVIDIA_DRIVER_NAME = Grammar(
    DNS_SUBDOMAIN.core,
    "the name of an NVIDIADriver resource like gpu-driver-rhcos (lowercase a-z, 0-9, '-', '.')",
    "gpu-driver-rhcos",
    NAME_MAX,
)
HOST = (
    rf"(?:localhost|{DNS_LABEL_CORE}(?:\.{DNS_LABEL_CORE})+|[0-9]{{1,3}}(?:\.[0-9]{{1,3}}){{3}})"
    r"(?::[0-9]{1,5})?"
)
# distribution/reference grammar: path components are lowercase, separated by . _ __ or -+.
PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
REPOSITORY = Grammar(
    rf"{HOST}(?:/{PATH_COMPONENT})+",
    "a registry host[:port]/path like quay.io/acme or 127.0.0.1:5000/nvidia (lowercase path)",
    "quay.io/acme/nvidia",
    REF_MAX,
)
# ClusterPolicy spec.driver.image: the CRD's [a-zA-Z0-9-]+, lowercase as a reference path must be.
IMAGE_NAME = Grammar(
    r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?",
    "an image name of lowercase letters, digits and '-' like nvidia-gpu-driver "
    "(CRD pattern [a-zA-Z0-9-]+; image references must be lowercase)",
    "nvidia-gpu-driver",
    IMAGE_NAME_MAX,
)
DIGEST = Grammar(
    r"sha256:[a-f0-9]{64}", "an image digest like sha256:<64 lowercase hex digits>", "sha256:" + "0" * 64, 72
)
TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
# A full reference with a tag and/or digest, registry host included (validation also wants one of them).
IMAGE_REF = Grammar(
    rf"{HOST}(?:/{PATH_COMPONENT})+(?::{TAG})?(?:@{DIGEST.core})?",
    "an image reference with a tag or digest like quay.io/openshift/origin-cli:4.18",
    "quay.io/openshift/origin-cli:4.18",
    REF_MAX,
)
# A git branch, tag or sha in the characters we allow; the lookaheads are git check-ref-format's:
# no '..', '//' or '/.' anywhere, no trailing '/', '.' or '.lock'.
GIT_REF = Grammar(
    r"(?!.*(?:\.\.|//|/\.))(?!.*(?:[/.]|\.lock)$)[A-Za-z0-9][A-Za-z0-9._/-]*",
    "a git ref (branch, tag or commit) like main, v1.2 or a 40-hex sha; git check-ref-format refuses "
    "'..', '//', '/.' and a trailing '/', '.' or '.lock'",
    "main",
    GIT_REF_MAX,
)
# An Airflow connection id as airflow/utils/helpers.py KEY_REGEX ``^[\w.-]+$`` takes it, ASCII only, and
# starting with a letter or digit (AIRFLOW_CONN_<ID> environment variables want no leading '-' or '.').
CONN_ID = Grammar(
    r"[A-Za-z0-9][A-Za-z0-9_.-]*",
    "an Airflow connection id like kubernetes_default (letters, digits, '_', '-', '.')",
    "kubernetes_default",
    250,
)
HTTPS_URL = Grammar(
    rf"https?://{HOST}(?:/[A-Za-z0-9._%-]*)*",
    "an https:// URL like https://api.openshift.com (http:// only for 127.0.0.1/localhost)",
    "https://api.openshift.com",
    REF_MAX,
)
FILE_PATH = Grammar(
    r"/[A-Za-z0-9._/+-]*[A-Za-z0-9._+-]",
    "an absolute file path like /etc/pki/tls/certs/ca-bundle.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    1024,
)

# One word of a command a pod runs without a shell (the GPU check's, e.g. ``nvidia-smi -L``): options allowed.
COMMAND_WORD = Grammar(
    r"[A-Za-z0-9_./=,:+-]+",
    "a command of plain words like 'nvidia-smi -L' (letters, digits and _ . / = , : + -)",
    "nvidia-smi -L",
    REF_MAX,
)
COMMAND_MAX_WORDS = 20

# An e-mail address for notifications: no display name, no spaces; the domain's labels in any case.
_MAIL_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
EMAIL = Grammar(
    rf"[A-Za-z0-9._%+-]{{1,64}}@{_MAIL_LABEL}(?:\.{_MAIL_LABEL})*",
    "an e-mail address like gpu-team@example.com",
    "gpu-team@example.com",
    NAME_MAX,
)

# ----------------------------------------------------------------------------- words

# The words an environment variable or an Airflow Variable may use for a boolean (any case).
TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off"})
BOOLEAN_EXPECTED = "true or false (also yes/no, on/off, 1/0)"
# A run's booleans are JSON's; as text (an API caller's "True") only these two words, any case.
JSON_BOOLEAN_WORDS = {"true": True, "false": False}


def boolean_word(value: str) -> bool | None:
    """``True``/``False`` for a boolean word (surrounding blanks and case ignored), else None."""
    word = value.strip().lower()
    return True if word in TRUE_WORDS else False if word in FALSE_WORDS else None
