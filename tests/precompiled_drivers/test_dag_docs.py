"""The DAG's docs in the UI: every task in the step table, every form field, and the README link."""

from __future__ import annotations

from harness.dag_runner import load_dag
from precompiled_drivers import procedure
from precompiled_drivers.dag_docs import README_HINT, dag_doc_md
from precompiled_drivers.form import form_params, help_text
from precompiled_drivers.settings import Settings


def test_the_step_table_lists_every_task_of_the_dag_in_order() -> None:
    dag = load_dag()
    assert dag.doc_md == dag_doc_md(Settings.from_env())
    text = dag_doc_md(Settings())
    table = [line for line in text.splitlines() if line.startswith("| `")]
    rows = [[c.strip(" `") for c in line.split("|")[1:4]] for line in table]
    assert [r[0] for r in rows] == list(dag.task_ids) == list(procedure.TASK_IDS)
    runs_as = dict(r[:2] for r in rows)
    assert runs_as["validate_inputs"] == "Python"
    assert runs_as["resolve_driver_toolkit"] == "pod per release"
    assert runs_as["build_driver_image"] == "pod per image (podman)"
    assert runs_as["patch_cluster_policy"] == "pod (oc)"


def test_the_form_list_shows_every_field_with_its_title_and_description() -> None:
    text = dag_doc_md(Settings(target_repository="quay.io/acme/nvidia"))
    for name, param in form_params(Settings()).items():
        row = next(line for line in text.splitlines() if f"(`{name}`, default" in line)
        assert param.schema["title"] in row and help_text(param).split(",")[0] in row, row
    assert "- **Image repository** (`repository`, default `quay.io/acme/nvidia`): Registry" in text
    assert '- **Driver versions** (`driver_versions`, default `["570.158.01"]`): NVIDIA' in text
    assert "- **GPU Operator version** (`operator_version`, default (empty)): " in text


def test_the_readme_is_linked_when_its_url_is_set() -> None:
    linked = dag_doc_md(Settings(docs_url="https://git.example.com/gpu/precompiled-drivers/README.md"))
    assert "[README](https://git.example.com/gpu/precompiled-drivers/README.md)" in linked
    assert README_HINT in dag_doc_md(Settings())


def test_a_hostile_docs_url_is_not_rendered_as_a_link() -> None:
    for url in (
        "javascript:alert(1)",
        "https://x.example/a) [click](https://evil.example",
        "http://evil.example",
    ):
        text = dag_doc_md(Settings(docs_url=url))
        assert "[README](" not in text and "PRECOMPILED_DRIVERS_DOCS_URL is not an https:// URL" in text, url


def test_the_installations_doc_is_made_at_import_so_a_forked_parse_finds_it_made() -> None:
    import os
    import subprocess
    import sys
    from pathlib import Path

    probe = (
        "from precompiled_drivers.dag_docs import dag_doc_md\n"
        "from precompiled_drivers.settings import installation\n"
        "made = dag_doc_md.cache_info().currsize\n"
        "dag_doc_md(installation())\n"
        "print(made, dag_doc_md.cache_info().misses)\n"
    )
    plugins = Path(__file__).resolve().parents[2] / "plugins"
    env = {**os.environ, "PYTHONPATH": str(plugins)}
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.split() == ["1", "1"]  # made once, at import; the DAG's call is a cache hit
