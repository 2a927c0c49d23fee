"""StartTraining through a real trainer server (port 0, real registry file): a dataset
outside SHOPSENSE_DATA_ROOT or reached through a symbolic link is refused with
INVALID_ARGUMENT naming ``dataset``, before any job exists, and the server keeps serving.
No job runs here (test_trainer_service.py trains for real)."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from shopsense.trainer.v1 import trainer_service_pb2 as pb
from shopsense.trainer.v1 import trainer_service_pb2_grpc as pb_grpc

from shared.data.synthetic import generate_store, write_wands

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("data-root")
    root, outside = base / "root", base / "outside"
    write_wands(generate_store(20, 6, seed=5), outside / "store")
    (root / "empty").mkdir(parents=True)
    (root / "linked").symlink_to(outside / "store")
    (root / "with-link").mkdir()
    (root / "with-link" / "product.csv").symlink_to(outside / "store" / "product.csv")
    return {"root": root, "outside": outside}


@pytest.fixture(scope="module")
def trainer(start_stack, folders: dict[str, Path]) -> pb_grpc.TrainerServiceStub:
    stack = start_stack(["trainer"], settings={"data_root": (folders["root"],)})
    return stack.stub("trainer", pb_grpc.TrainerServiceStub)


def _refusal(stub: pb_grpc.TrainerServiceStub, model: str, dataset: Path | str) -> str:
    with pytest.raises(grpc.RpcError) as refused:
        stub.StartTraining(pb.StartTrainingRequest(model=model, dataset=str(dataset)), timeout=30)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT, refused.value.details()
    return str(refused.value.details())


@pytest.mark.parametrize("model", ["cross_encoder", "sequence_recommender"])
def test_a_dataset_outside_the_root_or_through_a_link_is_refused(
    trainer: pb_grpc.TrainerServiceStub, folders: dict[str, Path], model: str
) -> None:
    root, outside = folders["root"], folders["outside"]
    assert _refusal(trainer, model, outside / "store") == (
        f"dataset: {outside / 'store'} is outside the data root ({root}; SHOPSENSE_DATA_ROOT "
        "sets it)"
    )
    assert _refusal(trainer, model, root / "linked").startswith(
        f"dataset: {root / 'linked'} passes through a symbolic link"
    )
    assert _refusal(trainer, model, root / "with-link").startswith(
        f"dataset: {root / 'with-link'} holds a symbolic link, product.csv"
    )
    assert _refusal(trainer, model, "relative/store").startswith("dataset: relative/store is not")
    # Inside the root the request goes on to the dataset's own checks.
    inside = _refusal(trainer, model, root / "empty")
    assert inside.startswith("dataset: ") and "data root" not in inside, inside
    assert "symbolic link" not in inside
    # Nothing was started, and the server still answers.
    assert list(trainer.ListJobs(pb.ListJobsRequest(), timeout=30).jobs) == []
