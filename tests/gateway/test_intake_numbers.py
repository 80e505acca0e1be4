"""Intake of mobile numbers: the one lookup, `carrier` with `carrier_check`, and nothing for other kinds."""

from __future__ import annotations

import orjson
import pytest

from gateway.catalog import Catalog
from gateway.config.loader import parse_config
from gateway.errors import CarrierMismatch
from gateway.intake import Intake, read_order_request
from gateway.mobile import AccountInfo, Carrier, Province

CONFIG = """
shops:
  demo: {secret: s, products: ["*"]}
suppliers:
  fulu: {protocol: fulu, base_url: "http://127.0.0.1:9", credentials: {app_key: k, app_secret: s}}
products:
  mobile.any.50:
    account: mobile_cn
    face_value: "50"
    offers: [{supplier: fulu, sku: "1", cost: "49.30"}]
  mobile.cmcc.50:
    account: mobile_cn
    carrier: cmcc
    face_value: "50"
    offers: [{supplier: fulu, sku: "1", cost: "49.30"}]
  mobile.cmcc.ported:
    account: mobile_cn
    carrier: cmcc
    carrier_check: "off"
    face_value: "50"
    offers: [{supplier: fulu, sku: "1", cost: "49.30"}]
  game.qq.qb10:
    account: qq
    face_value: "10"
    offers: [{supplier: fulu, sku: "2", cost: "9.90"}]
  game.other.id:
    account: game
    face_value: "10"
    offers: [{supplier: fulu, sku: "3", cost: "9.90"}]
"""


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog(parse_config(CONFIG, {}))


def read(catalog: Catalog, product: str, account: str) -> Intake:
    body = orjson.dumps({"order_id": "N-1", "product": product, "account": account})
    return read_order_request(body, "demo", catalog, 2.0)


def test_a_mobile_number_is_looked_up_once_at_intake(catalog: Catalog) -> None:
    intake = read(catalog, "mobile.any.50", "13900151234")

    assert intake.account_info == AccountInfo(Carrier.CMCC, Province.JIANGSU)
    assert intake.province is Province.JIANGSU


@pytest.mark.parametrize(("product", "account"), [("game.qq.qb10", "10001"), ("game.other.id", "player_1")])
def test_other_account_kinds_have_no_account_info(catalog: Catalog, product: str, account: str) -> None:
    intake = read(catalog, product, account)

    assert intake.account_info is None
    assert intake.province is None


def test_another_carriers_number_is_refused_naming_the_carrier_found(catalog: Catalog) -> None:
    with pytest.raises(CarrierMismatch) as info:
        read(catalog, "mobile.cmcc.50", "18612345678")

    error = info.value
    assert (error.http_status, error.code) == (422, "carrier_mismatch")
    assert "中国联通 (cucc)" in error.message
    assert error.details is not None
    assert [d["field"] for d in error.details] == ["account"]
    assert "中国联通" in error.details[0]["message"]


def test_the_products_own_carrier_passes(catalog: Catalog) -> None:
    assert read(catalog, "mobile.cmcc.50", "13800138000").account_info == AccountInfo(
        Carrier.CMCC, Province.BEIJING
    )


def test_carrier_check_off_lets_a_ported_number_through_and_still_shows_its_prefix(catalog: Catalog) -> None:
    intake = read(catalog, "mobile.cmcc.ported", "18612345678")

    assert intake.account_info == AccountInfo(Carrier.CUCC, Province.BEIJING)


def test_a_number_of_unknown_carrier_is_not_refused(catalog: Catalog) -> None:
    # Nothing proves it belongs to another carrier: the supplier judges it.
    intake = read(catalog, "mobile.cmcc.50", "14012345678")

    assert intake.account_info == AccountInfo(None, None)
