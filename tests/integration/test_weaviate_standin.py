"""The stand-in itself, driven with the real weaviate-client: the documented server behaviour the backend depends on
(empty strings are null, IsNull needs indexNullState, QUERY_MAXIMUM_RESULTS, one delete round, a duplicate class,
relative-score fusion, API-key auth). If the stand-in drifted from Weaviate here, the contract would prove nothing."""

from __future__ import annotations

import pytest
import weaviate
from weaviate.classes.config import Configure, DataType, Property, Tokenization, VectorDistances
from weaviate.classes.data import DataObject
from weaviate.classes.init import Auth
from weaviate.classes.query import Filter, HybridFusion, MetadataQuery
from weaviate.exceptions import UnexpectedStatusCodeError, WeaviateQueryError

from tests.weaviate_standin import WeaviateStandIn


def connect(server: WeaviateStandIn, *, with_key: bool = True):
    return weaviate.connect_to_custom(
        http_host="127.0.0.1",
        http_port=server.http_port,
        http_secure=False,
        grpc_host="127.0.0.1",
        grpc_port=server.grpc_port,
        grpc_secure=False,
        auth_credentials=Auth.api_key(server.api_key) if server.api_key and with_key else None,
        skip_init_checks=True,
    )


def make_collection(client, *, null_state: bool = False):
    return client.collections.create(
        "Things",
        properties=[
            Property(name="content", data_type=DataType.TEXT),
            Property(name="tag", data_type=DataType.TEXT, tokenization=Tokenization.FIELD),
            Property(name="n", data_type=DataType.INT),
            Property(name="note", data_type=DataType.TEXT, index_filterable=False, index_searchable=False),
        ],
        vector_config=Configure.Vectors.self_provided(name="default", vector_index_config=Configure.VectorIndex.hnsw(distance_metric=VectorDistances.COSINE)),
        inverted_index_config=Configure.inverted_index(index_null_state=null_state) if null_state else None,
    )


@pytest.fixture
def client():
    with WeaviateStandIn(query_maximum_results=5) as server:
        client = connect(server)
        yield client
        client.close()


def objects(n: int) -> list[DataObject]:
    return [
        DataObject(
            properties={"content": f"parcel number {i} was late", "tag": "" if i % 2 else "red", "n": i, "note": ""}, vector={"default": [1.0, float(i), 0.5]}
        )
        for i in range(n)
    ]


def test_empty_strings_are_null(client):
    things = make_collection(client)
    assert not things.data.insert_many(objects(4)).has_errors
    found = {o.properties["n"]: o.properties for o in things.query.fetch_objects(limit=5).objects}
    assert "tag" not in found[1] and "note" not in found[0] and found[0]["tag"] == "red"
    assert things.query.fetch_objects(filters=Filter.by_property("tag").equal(""), limit=5).objects == []
    with pytest.raises(WeaviateQueryError, match="indexNullState"):
        things.query.fetch_objects(filters=Filter.by_property("tag").is_none(True), limit=5)
    with pytest.raises(WeaviateQueryError, match="indexFilterable"):
        things.query.fetch_objects(filters=Filter.by_property("note").equal("x"), limit=5)


def test_is_null_with_null_state_indexed(client):
    things = make_collection(client, null_state=True)
    things.data.insert_many(objects(4))
    assert sorted(o.properties["n"] for o in things.query.fetch_objects(filters=Filter.by_property("tag").is_none(True), limit=5).objects) == [1, 3]
    assert client.collections.use("Things").config.get().inverted_index_config.index_null_state is True


def test_query_maximum_results_bounds_a_window_and_a_delete_round(client):
    things = make_collection(client)
    things.data.insert_many(objects(8))
    with pytest.raises(WeaviateQueryError, match="maximum results"):
        things.query.fetch_objects(limit=4, offset=2)
    first = things.data.delete_many(where=Filter.by_property("n").less_than(7))
    assert (first.matches, first.successful) == (5, 5)
    second = things.data.delete_many(where=Filter.by_property("n").less_than(7))
    assert (second.matches, second.successful) == (2, 2)
    assert things.aggregate.over_all(total_count=True).total_count == 1


def test_a_vector_of_another_length_is_refused(client):
    things = make_collection(client)
    things.data.insert_many(objects(2))
    result = things.data.insert_many(
        [DataObject(properties={"n": 8}, vector={"default": [1.0, 0.0, 0.0]}), DataObject(properties={"n": 9}, vector={"default": [1.0, 0.0]})]
    )
    assert list(result.errors) == [1] and "length 2" in result.errors[1].message


def test_a_duplicate_collection_is_a_422(client):
    make_collection(client)
    with pytest.raises(UnexpectedStatusCodeError, match="already exists") as raised:
        make_collection(client)
    assert raised.value.status_code == 422
    assert client.collections.exists("Things") and not client.collections.exists("Other")


def test_hybrid_is_relative_score_fusion(client):
    """The keyword leg alone (alpha 0) ranks by BM25 and normalises the best to 1, the worst to 0; alpha 1 is cosine."""
    things = make_collection(client)
    things.data.insert_many(
        [
            DataObject(properties={"content": "late late parcel", "n": 0}, vector={"default": [0.0, 1.0, 0.0]}),
            DataObject(properties={"content": "late parcel", "n": 1}, vector={"default": [1.0, 0.0, 0.0]}),
            DataObject(properties={"content": "a parcel arrived", "n": 2}, vector={"default": [0.7, 0.7, 0.0]}),
        ]
    )

    def ranked(alpha: float) -> list[tuple[int, float]]:
        response = things.query.hybrid(
            query="late",
            vector=[1.0, 0.0, 0.0],
            alpha=alpha,
            limit=3,
            fusion_type=HybridFusion.RELATIVE_SCORE,
            target_vector="default",
            return_metadata=MetadataQuery(score=True),
        )
        return [(o.properties["n"], round(o.metadata.score, 3)) for o in response.objects]

    keyword = ranked(0.0)
    assert [n for n, _ in keyword[:2]] == [0, 1] and keyword[0][1] == 1.0 and keyword[1][1] == 0.0  # n=2 has no "late"
    assert [n for n, _ in ranked(1.0)] == [1, 2, 0]
    assert [score for _, score in ranked(1.0)] == [1.0, pytest.approx(0.707, abs=0.01), 0.0]


def test_near_vector_and_bm25_alone(client):
    things = make_collection(client)
    things.data.insert_many(
        [
            DataObject(properties={"content": "late late parcel", "n": 0}, vector={"default": [0.0, 1.0, 0.0]}),
            DataObject(properties={"content": "late parcel and the", "n": 1}, vector={"default": [1.0, 0.0, 0.0]}),
        ]
    )
    near = things.query.near_vector(near_vector=[1.0, 0.0, 0.0], target_vector="default", limit=2, return_metadata=MetadataQuery(distance=True))
    assert [(o.properties["n"], round(o.metadata.distance, 3)) for o in near.objects] == [(1, 0.0), (0, 1.0)]
    keyword = things.query.bm25(query="the late", limit=2, return_metadata=MetadataQuery(score=True))
    assert [o.properties["n"] for o in keyword.objects] == [0, 1]  # "the" is an en stopword: only "late" counts
    assert keyword.objects[0].metadata.score > keyword.objects[1].metadata.score > 0


def test_api_key_is_required_when_set():
    with WeaviateStandIn(api_key="secret") as server:
        with pytest.raises(UnexpectedStatusCodeError, match="401"):
            connect(server, with_key=False)
        client = connect(server)
        assert client.collections.list_all() == {}
        client.close()
