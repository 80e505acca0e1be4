"""Carrier and province of mainland mobile numbers from phonenumbers' data, and how an order keeps them.

The numbers are long-assigned 号段 (139 0000…, 138 0013…, 186, 153, 192) whose carrier and region
the library has given for years; the data-wide tests hold the province mapping to every
description the installed data has for mainland mobile prefixes.
"""

from __future__ import annotations

import pytest
from phonenumbers.carrierdata import CARRIER_DATA
from phonenumbers.geodata import GEOCODE_DATA

from gateway.mobile import CARRIER_NAMES, AccountInfo, Carrier, Province
from gateway.numbering import look_up, province_of
from gateway.order import Order, OrderRequest, from_document, to_document
from gateway.views import operator_view, public_view

MAINLAND_MOBILE = "861"  # +86, then the leading 1 of every mainland mobile number

C, P = Carrier, Province


@pytest.mark.parametrize(
    ("account", "carrier", "province"),
    [
        ("13800138000", C.CMCC, P.BEIJING),
        ("13900151234", C.CMCC, P.JIANGSU),
        ("13900571234", C.CMCC, P.ZHEJIANG),
        ("13900041234", C.CMCC, P.NEI_MONGGOL),
        ("13900771234", C.CMCC, P.GUANGXI),
        ("13900001234", C.CMCC, P.XINJIANG),
        ("13900361234", C.CMCC, P.HEILONGJIANG),
        ("18612345678", C.CUCC, P.BEIJING),
        ("15312345678", C.CTCC, P.JIANGSU),
        # Sold nationwide: the geocoder says only "中国", so the province is not known.
        ("19212345678", C.CBN, None),
        # 140 is no 号段 the data holds valid: nothing known, nothing guessed.
        ("14012345678", None, None),
    ],
)
def test_look_up_gives_carrier_and_short_province(
    account: str, carrier: Carrier | None, province: Province | None
) -> None:
    assert look_up(account) == AccountInfo(carrier=carrier, province=province)


@pytest.mark.parametrize(
    ("description", "province"),
    [
        ("北京市", P.BEIJING),
        ("江苏省常州市", P.JIANGSU),
        ("广西南宁市", P.GUANGXI),
        ("内蒙古包头市", P.NEI_MONGGOL),
        ("新疆伊犁哈萨克自治州", P.XINJIANG),
        ("黑龙江省哈尔滨市", P.HEILONGJIANG),
        ("山西省太原市", P.SHANXI),
        ("陕西省西安市", P.SHAANXI),
        ("天津", P.TIANJIN),
        ("中国", None),
        ("", None),
        ("内蒙", None),  # the first two characters of 内蒙古 alone are no province
    ],
)
def test_province_of_a_geocoder_description(description: str, province: Province | None) -> None:
    assert province_of(description) == province


def test_every_mainland_mobile_description_in_the_data_has_a_province_or_is_nationwide() -> None:
    unmapped = {
        names["zh"]
        for prefix, names in GEOCODE_DATA.items()
        if prefix.startswith(MAINLAND_MOBILE) and "zh" in names and province_of(names["zh"]) is None
    }
    assert unmapped <= {"中国"}, sorted(unmapped)[:20]


def test_every_mainland_mobile_carrier_in_the_data_is_one_of_the_four() -> None:
    names = {names["zh"] for prefix, names in CARRIER_DATA.items() if prefix.startswith(MAINLAND_MOBILE)}
    assert names == set(CARRIER_NAMES.values())


def test_the_34_provinces_by_short_name_each_told_apart_by_its_first_two_characters() -> None:
    assert len(Province) == 34
    assert not [p for p in Province if p.value.endswith(("省", "市", "自治区", "特别行政区"))]
    assert len({p.value[:2] for p in Province}) == 34  # what province_of's index relies on
    assert [province_of(p.value) for p in Province] == list(Province)


def _order(info: AccountInfo | None) -> Order:
    request = OrderRequest(
        order_id="N-1", product="mobile.cmcc.50", account="13800138000", quantity=1, notify_url=None
    )
    return Order(
        uid="U1",
        shop="demo",
        request=request,
        face_value_cents=5000,
        created_at=1.0,
        updated_at=1.0,
        account_info=info,
    )


@pytest.mark.parametrize(
    "info",
    [AccountInfo(C.CMCC, P.BEIJING), AccountInfo(C.CBN, None), AccountInfo(None, None), None],
)
def test_account_info_is_stored_with_the_order(info: AccountInfo | None) -> None:
    assert from_document(to_document(_order(info))).account_info == info


def test_an_order_stored_before_account_info_reads_back_without_it() -> None:
    document = to_document(_order(AccountInfo(C.CMCC, P.BEIJING)))
    del document["account_info"]

    order = from_document(document)

    assert order.account_info is None
    assert order.province is None
    assert "account_info" not in public_view(order)


def test_views_show_the_stored_account_info_with_null_for_unknown() -> None:
    order = _order(AccountInfo(C.CBN, None))

    assert public_view(order)["account_info"] == {"carrier": "cbn", "province": None}
    assert operator_view(order)["account_info"] == {"carrier": "cbn", "province": None}
    assert "account_info" not in public_view(_order(None))


def test_the_tables_answer_as_phonenumbers_itself_does_across_the_prefixes() -> None:
    """The compact tables against the library's own lookups, one number every 37 prefixes."""
    from phonenumbers import PhoneNumber, carrier, geocoder

    differing = []
    for prefix in range(1_300_000, 2_000_000, 37):
        account = f"{prefix}{prefix % 10_000:04d}"
        number = PhoneNumber(country_code=86, national_number=int(account))
        expected = (
            carrier.name_for_number(number, "zh"),
            province_of(geocoder.description_for_number(number, "zh")),
        )
        info = look_up(account)
        found = (CARRIER_NAMES[info.carrier] if info.carrier else "", info.province)
        if found != expected:
            differing.append((account, expected, found))
    assert differing == []
