"""The personal ranking feature: the candidates' likeness to the shopper's profile, scaled
over the list, explained like every other feature; no profile, the same ranking. Ranking
centres the catalog's vectors by class as the recommender centres the profile's."""

from __future__ import annotations

import numpy as np
import pytest
from shopsense.common.v1 import common_pb2
from shopsense.ranking.v1 import ranking_service_pb2 as pb
from shopsense.retrieval.v1 import retrieval_service_pb2 as rpb

from services.ranking.catalog import CatalogVectors
from services.ranking.server import RankingServicer
from shared.contracts.common import product_to_proto
from shared.data.catalog import Product
from shared.errors import InvalidArgument
from shared.ranking.personal import (
    PERSONAL_FEATURE,
    ProductVectors,
    add_personal,
    checked_profile,
    likeness,
)
from shared.recommendation.events import PURCHASE, Interaction
from shared.recommendation.recommender import Recommender

pytestmark = pytest.mark.unit

# Three products of equal relevance; their vectors point three ways.
IDS = ["oak-table", "glass-table", "pine-table"]
VECTORS = np.array([[1, 0, 0], [0, 1, 0], [0.6, 0.8, 0]], dtype=np.float32)


class _Held:
    """The catalog vectors a ranking service holds (loaded: no background thread)."""

    def __init__(self, vectors: ProductVectors) -> None:
        self.current = vectors
        self.wanted = 0

    def want(self) -> None:
        self.wanted += 1


def _servicer(version: str = "1", weight: float = 0.1) -> tuple[RankingServicer, _Held]:
    held = _Held(ProductVectors.of(IDS, VECTORS, version, generation=3))
    return RankingServicer(None, None, None, 0, 0.5, held, weight), held  # type: ignore[arg-type]


def _request(profile: list[float] | None = None, version: str = "1") -> pb.RankRequest:
    candidates = [
        rpb.Candidate(product=common_pb2.Product(product_id=pid, title=pid), fused_score=0.03)
        for pid in IDS
    ]
    request = pb.RankRequest(query="table", candidates=candidates)
    if profile is not None:
        request.shopper_profile.CopyFrom(
            common_pb2.Embedding(values=profile, model_version=version)
        )
    return request


def test_likeness_scales_the_cosines_over_the_list_and_a_missing_vector_is_neutral() -> None:
    assert likeness([0.2, 0.5, 0.35]) == pytest.approx([0.0, 1.0, 0.5])
    assert likeness([0.2, None, 0.4]) == pytest.approx([0.0, 0.5, 1.0])
    assert likeness([0.3, 0.3]) == [0.0, 0.0]
    held = ProductVectors.of(IDS, VECTORS, "1", 1)
    assert held.cosines(np.array([0, 1, 0], dtype=np.float32), ["pine-table", "new"]) == [
        pytest.approx(0.8),
        None,
    ]


def test_the_profile_reorders_equal_candidates_and_explains_its_part() -> None:
    servicer, held = _servicer()
    plain = servicer.Rank(_request(), None)  # type: ignore[arg-type]
    assert [item.product_id for item in plain.items] == IDS  # ties keep retrieval order
    assert not plain.personalized and held.wanted == 0
    assert all(p.feature != PERSONAL_FEATURE for item in plain.items for p in item.parts)

    # A shopper who likes glass: the glass table first, then pine (cosine 0.8), then oak.
    reply = servicer.Rank(_request([0.0, 2.0, 0.0]), None)  # type: ignore[arg-type]
    assert reply.personalized and held.wanted == 1
    assert [item.product_id for item in reply.items] == ["glass-table", "pine-table", "oak-table"]
    for item in reply.items:
        assert item.score == pytest.approx(sum(p.contribution for p in item.parts))
    top = {p.feature: p for p in reply.items[0].parts}[PERSONAL_FEATURE]
    assert (top.value, top.weight, top.contribution) == pytest.approx((1.0, 0.1, 0.1))
    pine = {p.feature: p for p in reply.items[1].parts}[PERSONAL_FEATURE]
    assert pine.value == pytest.approx(0.8)


def test_an_empty_profile_or_another_encoder_version_leaves_the_ranking_as_it_was() -> None:
    servicer, _ = _servicer()
    plain = servicer.Rank(_request(), None)  # type: ignore[arg-type]
    for request in (_request([]), _request([0.0, 1.0, 0.0], version="2")):
        reply = servicer.Rank(request, None)  # type: ignore[arg-type]
        assert not reply.personalized
        assert [(i.product_id, i.score) for i in reply.items] == [
            (i.product_id, i.score) for i in plain.items
        ]


@pytest.mark.parametrize(
    ("profile", "version", "message"),
    [
        ([0.0, float("nan"), 1.0], "1", r"shopper_profile.values: must be finite numbers"),
        ([0.0, 1.0, 0.0], "", r"shopper_profile.model_version: required with values"),
        ([1.0, 0.0], "1", r"shopper_profile.values: 2 values, the catalog's 1 vectors have 3"),
    ],
)
def test_bad_profiles_are_refused_naming_the_field(
    profile: list[float], version: str, message: str
) -> None:
    servicer, _ = _servicer()
    with pytest.raises(InvalidArgument, match=message):
        servicer.Rank(_request(profile, version), None)  # type: ignore[arg-type]


def test_a_zero_profile_is_no_profile_and_weights_must_not_be_negative() -> None:
    assert checked_profile([0.0, 0.0], "1", "p") is None
    with pytest.raises(ValueError, match="weight: must be >= 0"):
        add_personal([], {}, -0.1)


def test_a_product_whose_vector_is_all_zero_is_neutral() -> None:
    # Centred by class, the only product of its class has nothing left: it is neither
    # lifted nor sunk, like a product without a vector.
    held = ProductVectors.of(["a", "b", "c"], np.array([[1, 0], [0, 0], [0, 1]]), "1", 1)
    cosines = held.cosines(np.array([1, 0], dtype=np.float32), ["a", "b", "c"])
    assert cosines == [pytest.approx(1.0), None, pytest.approx(0.0)]
    assert likeness(cosines) == pytest.approx([1.0, 0.5, 0.0])


# Two classes, two colours, twenty products of each pair: a product's vector is its class's
# direction, its colour's and its own title word's. Classes spelled as a storefront might;
# both services normalise them alike.
SOFA, RUG, GREY, GREEN = np.eye(4, dtype=np.float32)
ROOM: list[Product] = []
ROOM_ROWS: list[np.ndarray] = []
for kind, kind_vector, spelling in (("sofa", SOFA, "Sofas"), ("rug", RUG, " RUGS ")):
    for colour, colour_vector in (("grey", GREY), ("green", GREEN)):
        for n in range(20):
            ROOM.append(
                Product(
                    f"{colour}-{kind}-{n}",
                    f"{colour} {kind} {n}",
                    product_class=spelling if n % 2 else spelling.strip().lower(),
                    attributes={"colour": colour.title()},
                )
            )
            word = np.zeros(80, dtype=np.float32)
            word[len(ROOM_ROWS)] = 1.0
            ROOM_ROWS.append(np.concatenate([kind_vector + colour_vector, word]) / np.sqrt(3))
ROOM_VECTORS = np.array(ROOM_ROWS)


class _Retrieval:
    """Retrieval's catalog calls, answering from ``ROOM`` (the unit: ranking's loading)."""

    def GetCatalogStats(self, request: object, timeout: float) -> rpb.GetCatalogStatsResponse:
        return rpb.GetCatalogStatsResponse(generation=4, embedding_version="1")

    def ExportCatalog(self, request: object, timeout: float) -> list[rpb.ExportCatalogResponse]:
        exported = [
            rpb.ExportedProduct(product=product_to_proto(p), embedding=v.tolist())
            for p, v in zip(ROOM, ROOM_VECTORS, strict=True)
        ]
        return [
            rpb.ExportCatalogResponse(
                products=exported, catalog_generation=4, embedding_version="1", total_size=80
            )
        ]


def test_ranking_computes_the_candidates_vectors_as_the_recommender_the_profiles() -> None:
    recommender = Recommender()
    recommender.set_catalog(ROOM, ROOM_VECTORS, generation=4, version="1")
    recommender.ingest([Interaction("grey-sofa-3", PURCHASE, 1_700_000_000.0, user="ann")])
    profile = recommender.profile("ann", "")
    assert profile.vector is not None
    vectors = CatalogVectors("unused:1", 60.0)
    vectors._sync(_Retrieval())  # type: ignore[arg-type]
    held = vectors.current
    assert (held.version, held.generation) == ("1", 4)
    # A shopper who bought a grey sofa: every grey rug is as like their profile as can be
    # (their class's mean and their own title words left out), every green one unlike it.
    grey = held.cosines(profile.vector, [f"grey-rug-{n}" for n in range(20)])
    green = held.cosines(profile.vector, [f"green-rug-{n}" for n in range(20)])
    assert grey == pytest.approx([1.0] * 20, abs=1e-5)
    assert max(c for c in green if c is not None) < -0.9
