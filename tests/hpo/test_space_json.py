"""The one codec of a stored search space (hpo._space_json) and its two fronts' errors."""

from __future__ import annotations

import json
from typing import Any

import pytest
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
    distribution_to_json,
)

from hpo._space_json import SPACE_JSON_VERSION, SpaceJSONError, space_from_data, space_to_data
from hpo.samplers import NarrowingError, space_from_json, space_to_json
from hpo.storage import StorageError, decode_space, encode_space

# Every kind of distribution the samplers use, with the options that change its JSON.
INT = IntDistribution(1, 9)
INT_JSON = distribution_to_json(INT)
SPACE: dict[str, BaseDistribution] = {
    "float": FloatDistribution(-1.0, 2.5),
    "float_log": FloatDistribution(1e-5, 1e-1, log=True),
    "float_step": FloatDistribution(0.0, 1.0, step=0.25),
    "int": INT,
    "int_log": IntDistribution(1, 1024, log=True),
    "int_step": IntDistribution(10, 100, step=10),
    "categorical": CategoricalDistribution(["sgd", None, 1.5, True, 3]),
}


def _through_json(data: Any) -> Any:
    return json.loads(json.dumps(data))


@pytest.mark.parametrize("name", list(SPACE))
def test_every_kind_round_trips(name: str) -> None:
    one = {name: SPACE[name]}
    data = space_to_data(one)
    assert data == {
        "version": SPACE_JSON_VERSION,
        "params": [{"name": name, "distribution": json.loads(distribution_to_json(SPACE[name]))}],
    }
    assert space_from_data(_through_json(data)) == one
    assert space_from_json(_through_json(space_to_json(one))) == one
    assert decode_space(encode_space(one)) == one


def test_the_order_survives_and_both_fronts_write_the_same() -> None:
    order = list(reversed(SPACE))
    space = {name: SPACE[name] for name in order}
    back = space_from_data(_through_json(space_to_data(space)))
    assert list(back) == order and back == space
    assert json.loads(encode_space(space)) == space_to_json(space) == space_to_data(space)


@pytest.mark.parametrize("version", [None, 0, 2, "1"])
def test_a_wrong_version_is_rejected(version: Any) -> None:
    data = {"version": version, "params": space_to_data(SPACE)["params"]}
    with pytest.raises(SpaceJSONError, match="version"):
        space_from_data(data)
    with pytest.raises(SpaceJSONError, match="version"):
        space_from_data(data, plain=True)  # a versioned layout is never read as a plain object
    with pytest.raises(NarrowingError, match="version"):
        space_from_json(data)
    with pytest.raises(StorageError, match="version"):
        decode_space(json.dumps(data))


@pytest.mark.parametrize(
    "data",
    [
        [],
        {"version": 1, "params": {}},
        {"version": 1, "params": [{"distribution": {}}]},
        {"version": 1, "params": [{"name": 3, "distribution": json.loads(INT_JSON)}]},
        {"version": 1, "params": [{"name": "x", "distribution": {"name": "Nope", "attributes": {}}}]},
        {"version": 1, "params": [{"name": "x", "distribution": INT_JSON}]},
        space_to_data({"x": INT}) | {"params": space_to_data({"x": INT})["params"] * 2},
    ],
)
def test_what_is_not_a_space_is_rejected(data: Any) -> None:
    with pytest.raises(SpaceJSONError):
        space_from_data(data)
    with pytest.raises(NarrowingError):
        space_from_json(data)


def test_the_codec_error_is_a_value_error() -> None:
    assert issubclass(SpaceJSONError, ValueError)


def test_plain_objects_and_distribution_text_are_storage_only() -> None:
    plain = {name: json.loads(distribution_to_json(d)) for name, d in SPACE.items()}
    assert space_from_data(plain, plain=True) == SPACE
    assert decode_space(json.dumps(plain)) == SPACE
    as_text = {name: distribution_to_json(d) for name, d in SPACE.items()}
    assert decode_space(json.dumps(as_text)) == SPACE
    layout_with_text = {"version": 1, "params": [{"name": "x", "distribution": INT_JSON}]}
    assert decode_space(json.dumps(layout_with_text)) == {"x": INT}
    with pytest.raises(SpaceJSONError):
        space_from_data(plain)  # the samplers read the layout only
    with pytest.raises(StorageError, match="invalid stage space JSON"):
        decode_space("not json")
    with pytest.raises(StorageError, match="invalid stage space JSON"):
        decode_space("[1, 2]")
