"""`carrier`, `carrier_check` and offers' `provinces` / `exclude_provinces`: values, rules, key paths."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.config.loader import load_config, parse_config
from gateway.config.model import CarrierCheck
from gateway.mobile import Carrier, Province
from tests.config.samples import offer, problems, valid

DEMO = Path(__file__).parents[2] / "gateway.yaml"
PRODUCT = 'products["mobile.cmcc.50"]'
OFFER = f"{PRODUCT}.offers[0]"


def product(data: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = data["products"]["mobile.cmcc.50"]
    return result


def with_qq_product(data: dict[str, Any], **keys: Any) -> dict[str, Any]:
    data["products"]["game.qq.qb10"] = {
        "account": "qq",
        "face_value": "10",
        "offers": [{"supplier": "fulu", "sku": "2", "cost": "9.90"}],
        **keys,
    }
    return data


def test_defaults_check_nothing_and_serve_everywhere() -> None:
    config = parse_config(yaml.safe_dump(valid()), {})
    loaded = config.products["mobile.cmcc.50"]

    assert (loaded.carrier, loaded.carrier_check) == (None, CarrierCheck.PREFIX)
    assert (loaded.offers[0].provinces, loaded.offers[0].exclude_provinces) == (None, ())


def test_carrier_and_provinces_are_read_as_their_values() -> None:
    data = valid()
    product(data).update(carrier="cmcc", carrier_check="off")
    offer(data)["provinces"] = ["江苏", "内蒙古"]

    loaded = parse_config(yaml.safe_dump(data, allow_unicode=True), {}).products["mobile.cmcc.50"]

    assert (loaded.carrier, loaded.carrier_check) == (Carrier.CMCC, CarrierCheck.OFF)
    assert loaded.offers[0].provinces == (Province.JIANGSU, Province.NEI_MONGGOL)


def test_unknown_carrier_and_check_list_the_valid_ones() -> None:
    data = valid()
    product(data).update(carrier="unicom", carrier_check="strict")

    assert problems(data) == [
        (f"{PRODUCT}.carrier", 'must be one of cmcc, cucc, ctcc, cbn; got string "unicom"'),
        (f"{PRODUCT}.carrier_check", 'must be one of prefix, off; got string "strict"'),
    ]


@pytest.mark.parametrize(
    ("written", "meant"),
    [("江苏省", "江苏"), ("北京市", "北京"), ("广西壮族自治区", "广西"), ("新疆维吾尔自治区", "新疆")],
)
def test_a_province_with_its_suffix_is_refused_with_the_short_name(written: str, meant: str) -> None:
    data = valid()
    offer(data)["provinces"] = ["浙江", written]

    ((path, message),) = problems(data)

    assert path == f"{OFFER}.provinces[1]"
    assert message.startswith("must be one of 北京, 天津, 河北, ")
    assert message.endswith(f'got string "{written}"; did you mean "{meant}"?')


def test_a_name_that_is_no_province_lists_the_34() -> None:
    data = valid()
    offer(data)["exclude_provinces"] = ["华东"]

    ((path, message),) = problems(data)

    assert path == f"{OFFER}.exclude_provinces[0]"
    assert message.count(", ") == 33
    assert message.endswith('got string "华东"')


def test_provinces_and_exclude_provinces_on_one_offer_are_refused() -> None:
    data = valid()
    offer(data).update(provinces=["江苏"], exclude_provinces=["浙江"])

    assert problems(data) == [
        (
            OFFER,
            "has both provinces and exclude_provinces: list the provinces the offer serves, "
            "or those it does not serve, not both",
        )
    ]


def test_an_empty_provinces_list_would_serve_nobody() -> None:
    data = valid()
    offer(data)["provinces"] = []

    assert problems(data) == [(f"{OFFER}.provinces", "must have at least 1 item")]


def test_a_province_listed_twice() -> None:
    data = valid()
    offer(data)["provinces"] = ["江苏", "浙江", "江苏"]

    assert problems(data) == [(f"{OFFER}.provinces[2]", '"江苏" is already listed at [0]')]


def test_carrier_and_provinces_apply_only_to_mobile_products() -> None:
    data = with_qq_product(valid(), carrier="cmcc")
    data["products"]["game.qq.qb10"]["offers"][0]["provinces"] = ["江苏"]

    assert problems(data) == [
        (
            'products["game.qq.qb10"].carrier',
            "applies only to mobile_cn products; this product's account is qq",
        ),
        (
            'products["game.qq.qb10"].offers[0].provinces',
            "applies only to mobile_cn products; this product's account is qq",
        ),
    ]


def test_the_demo_sells_cmcc_numbers_through_a_regional_supplier() -> None:
    config = load_config(DEMO, {})
    demo = config.products["mobile.cmcc.50"]

    assert demo.carrier is Carrier.CMCC
    assert any(o.provinces for o in demo.offers)
    assert any(o.provinces is None and not o.exclude_provinces for o in demo.offers)
