"""Session fixtures shared by every test level: one export, one Triton."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy
from sqlalchemy.engine import make_url

from shared.models.tokenization import Tokenizer

# Tests compare rankings exactly; the shuffle of a share of searches (exploration) would make
# them flaky. The tests of exploration turn it on for their own gateway.
os.environ.setdefault("SHOPSENSE_EXPLORE_RATE", "0")


@pytest.fixture(scope="session")
def tokenizer() -> Tokenizer:
    """The base model's tokenizer (thread-safe, so one per session)."""
    return Tokenizer()


@pytest.fixture(scope="session")
def exported_model_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Triton model repository in a tmp dir with ``text_encoder/1/model.onnx``,
    ``model.py`` and ``config.pbtxt``: exported once per session (about 7 s)."""
    from shared.training.export import export_text_encoder

    repository = tmp_path_factory.mktemp("triton_models")
    export_text_encoder(version=1, repository=repository)
    return repository


@pytest.fixture(scope="session")
def engine_atol() -> Callable[[Path], float]:
    """Absolute tolerance between two runs of one version folder on the engine its export
    chose: fp32 arithmetic agrees to 1e-4 whatever the batch; bf16 rounds differently
    with the batch's shape (up to about 1e-3 on unit embeddings); int8 (dynamic) scales
    its activations per batch, so the same text embedded in another batch moves by up to
    about 0.03 per value on unit embeddings (0.032 the most in 200 random merges of the
    Triton tests' texts). Each is well below what a wrong row, version or padding would
    show (0.15 and more between those texts)."""

    def atol(version_dir: Path) -> float:
        from shared.models.onnx_runtime import served_engine

        precision = served_engine(version_dir)[1]
        return {"fp32": 1e-4, "bf16": 5e-3}.get(precision, 0.06)

    return atol


@pytest.fixture(scope="session")
def triton_server(exported_model_repository: Path) -> Iterator:
    """A real tritonserver serving ``exported_model_repository`` on free ports."""
    from shared.models.triton_server import TritonServer

    server = TritonServer(
        exported_model_repository,
        startup_timeout_s=120.0,
        log_file=exported_model_repository.parent / "tritonserver.log",
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


POSTGRES_URL_ENV = "SHOPSENSE_TEST_POSTGRES_URL"


@pytest.fixture(scope="session")
def postgres_server_url() -> str:
    """The test PostgreSQL from SHOPSENSE_TEST_POSTGRES_URL (``eval "$(.ci/start-postgres)"``).

    Unset: PostgreSQL tests skip on a developer's machine but fail when CI is set, so that CI
    can never pass without having tested PostgreSQL.
    """
    url = os.environ.get(POSTGRES_URL_ENV, "")
    if not url:
        message = f'{POSTGRES_URL_ENV} is not set; run eval "$(.ci/start-postgres)" first'
        if os.environ.get("CI"):
            pytest.fail(f"CI is set and {message}", pytrace=False)
        pytest.skip(message)
    return url


@pytest.fixture
def postgres_url(postgres_server_url: str) -> Iterator[str]:
    """A URL whose connections see only a fresh, empty schema, dropped after the test."""
    schema = f"test_{uuid.uuid4().hex[:12]}"
    admin = sqlalchemy.create_engine(postgres_server_url, poolclass=sqlalchemy.NullPool)
    with admin.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    url = make_url(postgres_server_url).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()
