"""Carrier and province of a mainland mobile number (号段), from phonenumbers' offline data.

Pure and local (no network, no clock). The data is phonenumbers' own, but its geocoder loads every
country's at once (about 110 MiB in each process that imports it). So a child process reads it once,
at start-up, and hands back what the mainland's mobile numbers need: two byte arrays indexed by a
number's first seven digits (2 MB together). This process keeps those and phonenumbers' number
types, which decide, as its own lookups do, whether a number is a mobile number at all. Each order
then pays one type check and two array reads (bench/numbering.py measures both).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from phonenumbers import PhoneNumber, PhoneNumberType, number_type

from gateway.mobile import CARRIER_NAMES, AccountInfo, Carrier, Province

CHINA_CALLING_CODE: Final = 86
LANGUAGE: Final = "zh"

_CARRIERS: Final[Mapping[str, Carrier]] = MappingProxyType({name: c for c, name in CARRIER_NAMES.items()})
# The geocoder names a place as its province's short name and, after it, the rest: "江苏省常州市",
# "北京市", "广西南宁市", "内蒙古包头市"; a prefix sold nationwide (中国广电 192, virtual operators'
# 170) is just "中国". The first two characters tell the 34 short names apart (a test holds them to
# it), so one dict lookup finds the candidate and a prefix comparison confirms it.
_BY_HEAD: Final[Mapping[str, Province]] = MappingProxyType({p.value[:2]: p for p in Province})


_CHILD: Final = "GATEWAY_NUMBERING_CHILD"
FIRST_PREFIX: Final = 1_000_000  # the tables hold the seven-digit prefixes 1000000 to 1999999
PREFIXES: Final = 1_000_000
# The types phonenumbers names a carrier for; its geocoder answers for these on the mainland too.
_MOBILE_TYPES: Final = frozenset(
    {PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE, PhoneNumberType.PAGER}
)
_CARRIER_CODES: Final = (None, *Carrier)  # a table byte is an index here: 0 unknown
_PROVINCE_CODES: Final = (None, *Province)


def look_up(account: str) -> AccountInfo:
    """What the prefix of `account` (11 ASCII digits, already validated as `mobile_cn`) says.

    A prefix the data does not know, or a number phonenumbers does not hold valid (a 号段 not yet
    in its data), gives None for that part: unknown, never a guess.
    """
    # Built directly: parse() would spend more than the lookups re-reading digits intake checked.
    number = PhoneNumber(country_code=CHINA_CALLING_CODE, national_number=int(account))
    if number_type(number) not in _MOBILE_TYPES:
        return AccountInfo(carrier=None, province=None)
    index = int(account[:7]) - FIRST_PREFIX
    return AccountInfo(
        carrier=_CARRIER_CODES[_CARRIERS_TABLE[index]], province=_PROVINCE_CODES[_PROVINCES_TABLE[index]]
    )


def province_of(description: str) -> Province | None:
    """The province a geocoder description starts with: "江苏省常州市" -> 江苏; "中国" -> None."""
    province = _BY_HEAD.get(description[:2])
    if province is None or not description.startswith(province.value):
        return None
    return province


def _tables_from_data() -> bytes:
    """Both tables from phonenumbers' data (in the child process): carriers, then provinces.

    Prefixes are applied shortest first, so a longer (more precise) one overrides the range of a
    shorter one, as phonenumbers' longest-prefix lookup does.
    """
    from phonenumbers.carrierdata import CARRIER_DATA
    from phonenumbers.geodata import GEOCODE_DATA

    carriers = bytearray(PREFIXES)
    provinces = bytearray(PREFIXES)
    carrier_codes = {c: i for i, c in enumerate(_CARRIER_CODES) if c is not None}
    province_codes = {p: i for i, p in enumerate(_PROVINCE_CODES) if p is not None}

    def carrier_code(name: str) -> int:
        found = _CARRIERS.get(name)
        return 0 if found is None else carrier_codes[found]

    def province_code(name: str) -> int:
        found = province_of(name)
        return 0 if found is None else province_codes[found]

    for table, data, code_of in (
        (carriers, CARRIER_DATA, carrier_code),
        (provinces, GEOCODE_DATA, province_code),
    ):
        mainland = sorted((p for p in data if p.startswith("861") and len(p) <= 9), key=len)
        for prefix in mainland:
            digits = prefix[2:]
            low = int(digits.ljust(7, "0")) - FIRST_PREFIX
            high = int(digits.ljust(7, "9")) - FIRST_PREFIX + 1
            table[low:high] = bytes([code_of(data[prefix].get(LANGUAGE, ""))]) * (high - low)
    return bytes(carriers) + bytes(provinces)


def _load_tables() -> tuple[bytes, bytes]:
    """Run `_tables_from_data` in a child process: its 110 MiB of data die with it."""
    code = "import sys, gateway.numbering as n; sys.stdout.buffer.write(n._tables_from_data())"
    done = subprocess.run(  # noqa: S603 (our own interpreter and module)
        [sys.executable, "-c", code], capture_output=True, check=True, env={**os.environ, _CHILD: "1"}
    )
    tables = done.stdout
    if len(tables) != 2 * PREFIXES:
        raise RuntimeError(f"numbering tables: expected {2 * PREFIXES} bytes, got {len(tables)}")
    return tables[:PREFIXES], tables[PREFIXES:]


# Loaded once per process, at import (start-up): never in an order's request. The child that builds
# them imports this module too, and must not start a child of its own.
if os.environ.get(_CHILD) == "1":
    _CARRIERS_TABLE, _PROVINCES_TABLE = b"", b""
else:
    _CARRIERS_TABLE, _PROVINCES_TABLE = _load_tables()
