"""Mainland mobile numbers as orders and config name them: carriers, provinces, an order's account info.

Values only, light enough for the config model and the stores: the lookup itself, with its
phonenumbers data, is `numbering.py`'s.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Final


class Carrier(StrEnum):
    """The mainland carriers that own 号段 (prefixes); virtual operators' numbers count as their host's."""

    CMCC = "cmcc"
    CUCC = "cucc"
    CTCC = "ctcc"
    CBN = "cbn"

    @property
    def chinese_name(self) -> str:
        return CARRIER_NAMES[self]


CARRIER_NAMES: Final[Mapping[Carrier, str]] = MappingProxyType(
    {
        Carrier.CMCC: "中国移动",
        Carrier.CUCC: "中国联通",
        Carrier.CTCC: "中国电信",
        Carrier.CBN: "中国广电",
    }
)


class Province(StrEnum):
    """The 34 province-level divisions by their short names, without 省/市/自治区/特别行政区."""

    BEIJING = "北京"
    TIANJIN = "天津"
    HEBEI = "河北"
    SHANXI = "山西"
    NEI_MONGGOL = "内蒙古"
    LIAONING = "辽宁"
    JILIN = "吉林"
    HEILONGJIANG = "黑龙江"
    SHANGHAI = "上海"
    JIANGSU = "江苏"
    ZHEJIANG = "浙江"
    ANHUI = "安徽"
    FUJIAN = "福建"
    JIANGXI = "江西"
    SHANDONG = "山东"
    HENAN = "河南"
    HUBEI = "湖北"
    HUNAN = "湖南"
    GUANGDONG = "广东"
    GUANGXI = "广西"
    HAINAN = "海南"
    CHONGQING = "重庆"
    SICHUAN = "四川"
    GUIZHOU = "贵州"
    YUNNAN = "云南"
    XIZANG = "西藏"
    SHAANXI = "陕西"
    GANSU = "甘肃"
    QINGHAI = "青海"
    NINGXIA = "宁夏"
    XINJIANG = "新疆"
    TAIWAN = "台湾"
    HONG_KONG = "香港"
    MACAU = "澳门"


@dataclass(frozen=True, slots=True)
class AccountInfo:
    """What the number's prefix says, looked up once when the order was taken; None: not known."""

    carrier: Carrier | None
    province: Province | None

    def as_json(self) -> dict[str, str | None]:
        """The order JSON's `account_info` (CONTRACT.md §7); the stored form is the same."""
        return {
            "carrier": self.carrier.value if self.carrier is not None else None,
            "province": self.province.value if self.province is not None else None,
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> AccountInfo:
        carrier, province = doc.get("carrier"), doc.get("province")
        return cls(
            carrier=Carrier(carrier) if carrier is not None else None,
            province=Province(province) if province is not None else None,
        )
