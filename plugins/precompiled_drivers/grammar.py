"""The shapes of the run's inputs as regular expressions: one owner for ``validation`` and the form.

``validation`` compiles these (``re.fullmatch``, after its own checks for whitespace, control and
non-ASCII characters); ``form`` puts them into the trigger form's JSON Schema through :func:`anchored`.
Both readers must agree, so the expressions are written for both engines: Python ``re`` (what
jsonschema, and so Airflow's ``Param``, uses) and ECMAScript. ``[0-9]`` on purpose, never ``\\d``:
in Python ``\\d`` also matches fullwidth and Arabic-Indic digits, and a schema pattern has no earlier
ASCII check to stop them.
"""

from __future__ import annotations

# NVIDIA datacenter driver: NNN.NN.NN or NNN.NNN.NN (570.158.01).
DRIVER_VERSION = r"[0-9]{3}\.[0-9]{2,3}\.[0-9]{2}"
# CUDA x.y.z: it names the nvcr.io/nvidia/cuda base image tag (12.8.1).
CUDA_VERSION = r"[0-9]{1,2}\.[0-9]{1,2}\.[0-9]{1,2}"
# GPU Operator release, with or without its leading v (v26.7.0, 26.7.0, v25.10.0-rc.1).
OPERATOR_VERSION = r"v?[0-9]{1,3}\.[0-9]{1,3}(?:\.[0-9]{1,3})?(?:-[0-9A-Za-z]+(?:\.[0-9A-Za-z]+)*)?"

DNS_LABEL = r"[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?"
HOST = rf"(?:localhost|{DNS_LABEL}(?:\.{DNS_LABEL})+|[0-9]{{1,3}}(?:\.[0-9]{{1,3}}){{3}})(?::[0-9]{{1,5}})?"
# distribution/reference grammar: path components are lowercase, separated by . _ __ or -+.
PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
REPOSITORY = rf"{HOST}(?:/{PATH_COMPONENT})+"
# ClusterPolicy spec.driver.image: the CRD's [a-zA-Z0-9-]+, lowercase as a reference path must be.
IMAGE_NAME = r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?"
# A git branch, tag or sha, in the characters we allow; GIT_REF_FORBIDDEN lists what git refuses.
GIT_REF = r"[A-Za-z0-9][A-Za-z0-9._/-]*"
# Lookaheads: no '..', '//' or '/.' anywhere; no trailing '/', '.' or '.lock' (git check-ref-format).
GIT_REF_FORBIDDEN = r"(?!.*(?:\.\.|//|/\.))(?!.*(?:[/.]|\.lock)$)"

# Lengths (characters) the validators allow.
SHORT_MAX = 64
NAME_MAX = 253
REF_MAX = 512
GIT_REF_MAX = 255
IMAGE_NAME_MAX = 128


def anchored(core: str, *, optional: bool = False) -> str:
    """``core`` as a whole-value JSON Schema pattern (schema patterns search; they don't fullmatch).

    ``$(?!\\n)``: Python's ``$`` also matches before a final newline, which would let ``"570.158.01\\n"``
    through. ``optional`` also accepts the empty string (an API caller's way to say "default").
    """
    body = f"(?:{core})?" if optional else f"(?:{core})"
    return f"^{body}$(?!\\n)"
