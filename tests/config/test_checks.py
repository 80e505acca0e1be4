"""Checks across sections: references, adapter settings and cross-field limits, alone and via the loader."""

from __future__ import annotations

from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest
import yaml

from adapters.interface import AccountKind, AdapterSettings, InvalidSettings, SupplierAdapter, Verdict
from gateway.config.checks import check_config
from gateway.config.loader import ConfigError, parse_config
from gateway.config.model import GatewayConfig, OfferConfig, ProductConfig, SupplierConfig
from gateway.secret import Secret
from tests.config.samples import fulu, problems, valid


def test_offer_naming_a_missing_supplier() -> None:
    data = valid()
    data["products"]["mobile.cmcc.50"]["offers"].append({"supplier": "juhe", "sku": "50", "cost": "49.25"})

    assert problems(data) == [
        ('products["mobile.cmcc.50"].offers[1].supplier', 'unknown supplier "juhe"; defined suppliers: fulu')
    ]


def test_same_supplier_twice_in_one_product() -> None:
    data = valid()
    data["products"]["mobile.cmcc.50"]["offers"].append({"supplier": "fulu", "sku": "other", "cost": "49.00"})

    assert problems(data) == [
        ('products["mobile.cmcc.50"].offers[1].supplier', 'supplier "fulu" is already offered at offers[0]')
    ]


def test_shop_whose_patterns_match_no_product() -> None:
    data = valid()
    data["shops"]["demo"]["products"] = ["game.*", "mobile.cmcc.5"]

    assert problems(data) == [
        ("shops.demo.products", "allows no product: none of its patterns matches a configured product"),
        ("shops.demo.products[0]", '"game.*" matches no product'),
        ("shops.demo.products[1]", '"mobile.cmcc.5" matches no product'),
    ]


def test_shop_with_one_matching_pattern_may_keep_others_for_later() -> None:
    data = valid()
    data["shops"]["demo"]["products"] = ["game.qq.*", "mobile.cmcc.?0"]

    assert parse_config(yaml.safe_dump(data), {}).shops["demo"].products == ("game.qq.*", "mobile.cmcc.?0")


def test_shop_with_no_patterns_allows_no_product() -> None:
    data = valid()
    del data["shops"]["demo"]["products"]

    assert problems(data) == [
        ("shops.demo.products", "allows no product: the list of product patterns is empty")
    ]


def test_patterns_are_case_sensitive() -> None:
    data = valid()
    data["shops"]["demo"]["products"] = ["MOBILE.*"]

    assert "shops.demo.products" in dict(problems(data))


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "::1", "localhost", "shop.example.com", "hooks-1.shop.example.cn"]
)
def test_bare_notify_hosts_are_accepted(host: str) -> None:
    data = valid()
    data["shops"]["demo"]["notify_hosts"] = [host]

    assert parse_config(yaml.safe_dump(data), {}).shops["demo"].notify_hosts == (host,)


@pytest.mark.parametrize(
    "host",
    [
        "https://shop.example.com",
        "shop.example.com:8443",
        "shop.example.com/hooks",
        "[::1]",
        "",
        "-bad.example",
        "a b",
    ],
)
def test_notify_hosts_that_are_not_bare_host_names(host: str) -> None:
    data = valid()
    data["shops"]["demo"]["notify_hosts"] = ["127.0.0.1", host]

    [(path, message)] = problems(data)

    assert path == "shops.demo.notify_hosts[1]"
    assert message.startswith(f'"{host}" is not a bare host name or IP address')


def test_unknown_protocol_lists_the_valid_ones() -> None:
    data = valid()
    fulu(data)["protocol"] = "fuul"

    [(path, message)] = problems(data)

    assert path == "suppliers.fulu.protocol"
    assert message.startswith('unknown protocol "fuul"; valid: ')
    assert "fulu" in message.removeprefix('unknown protocol "fuul"; valid: ').split(", ")


def test_adapter_refusing_the_settings_is_reported_under_the_supplier() -> None:
    data = valid()
    del fulu(data)["credentials"]["app_secret"]

    assert "suppliers.fulu.credentials.app_secret" in dict(problems(data))


def _refusing_adapter(settings: AdapterSettings) -> SupplierAdapter:
    raise InvalidSettings([("credentials.token", "missing"), ("base_url", f"{settings.name} wants https")])


def _config_with(supplier: SupplierConfig, name: str = "east-1") -> GatewayConfig:
    offer = OfferConfig(supplier=name, sku="1", cost=100)
    product = ProductConfig(account=AccountKind.MOBILE_CN, face_value=100, offers=(offer,))
    return GatewayConfig(
        suppliers=MappingProxyType({name: supplier}),
        products=MappingProxyType({"mobile.x": product}),
    )


def test_invalid_settings_map_to_key_paths_relative_to_the_supplier() -> None:
    supplier = SupplierConfig(
        protocol="strict",
        base_url="http://127.0.0.1:1",
        credentials=MappingProxyType({"key": Secret("k")}),
    )

    findings = check_config(_config_with(supplier), adapters={"strict": _refusing_adapter})

    assert findings == [
        (("suppliers", "east-1", "credentials", "token"), "missing"),
        (("suppliers", "east-1", "base_url"), "east-1 wants https"),
    ]


def test_adapter_receives_revealed_credentials_and_code_overrides() -> None:
    seen: list[AdapterSettings] = []

    def recording_adapter(settings: AdapterSettings) -> SupplierAdapter:
        seen.append(settings)
        raise InvalidSettings([("", "refused as a whole")])

    supplier = SupplierConfig(
        protocol="recording",
        base_url="http://127.0.0.1:1",
        credentials=MappingProxyType({"key": Secret("k-value")}),
        codes=MappingProxyType({"9": Verdict.FAILED}),
    )

    findings = check_config(_config_with(supplier, "s"), adapters={"recording": recording_adapter})

    assert findings == [(("suppliers", "s"), "refused as a whole")]
    [settings] = seen
    assert (settings.name, settings.base_url, dict(settings.credentials)) == (
        "s",
        "http://127.0.0.1:1",
        {"key": "k-value"},
    )
    assert settings.codes == {"9": Verdict.FAILED}


@pytest.mark.parametrize(
    "base_url",
    ["http://127.0.0.1:9101", "http://127.8.9.10:9101", "http://localhost:9101", "http://[::1]:9101"],
)
def test_simulator_on_a_loopback_address(base_url: str) -> None:
    data = valid()
    fulu(data)["base_url"] = base_url
    fulu(data)["simulate"] = {"latency": "10ms"}

    assert parse_config(yaml.safe_dump(data), {}).suppliers["fulu"].simulate is not None


@pytest.mark.parametrize(
    "base_url", ["http://10.0.0.5:9101", "https://api.fulu.example.com", "http://0.0.0.0:9101"]
)
def test_simulator_refuses_a_host_that_is_not_loopback(base_url: str) -> None:
    data = valid()
    fulu(data)["base_url"] = base_url
    fulu(data)["simulate"] = {}

    [(path, message)] = problems(data)

    assert path == "suppliers.fulu.simulate"
    assert message.startswith("the bundled simulator serves only on this machine")


def test_breaker_may_not_stay_open_for_less_than_it_opens_for() -> None:
    data = valid()
    fulu(data)["breaker"] = {"open_for": "30s", "max_open_for": "20s"}

    assert problems(data) == [("suppliers.fulu.breaker.max_open_for", "must be at least open_for (30s)")]


def test_breaker_limits_may_be_equal() -> None:
    data = valid()
    fulu(data)["breaker"] = {"open_for": "30s", "max_open_for": "30s"}

    assert parse_config(yaml.safe_dump(data), {}).suppliers["fulu"].breaker.max_open_for == 30.0


def test_notify_backoff_may_not_cap_below_its_start() -> None:
    data = valid()
    data["notify"] = {"backoff": {"initial": "10m", "max": "5m"}}

    assert problems(data) == [("notify.backoff.max", "must be at least backoff.initial (600s)")]


# Checks alongside conversion problems


def test_a_supplier_with_its_own_errors_is_not_also_reported_missing() -> None:
    data = valid()
    fulu(data)["timeout"] = "soon"

    assert [path for path, _ in problems(data)] == ["suppliers.fulu.timeout"]


def test_a_product_with_its_own_errors_still_counts_for_shop_patterns() -> None:
    data = valid()
    data["products"]["mobile.cmcc.50"]["face_value"] = 50

    assert [path for path, _ in problems(data)] == ['products["mobile.cmcc.50"].face_value']


def test_checks_still_run_when_other_sections_have_errors() -> None:
    data = valid()
    data["server"] = {"listen": "anywhere"}
    data["products"]["mobile.cmcc.50"]["offers"][0]["supplier"] = "nobody"

    assert [path for path, _ in problems(data)] == [
        "server.listen",
        'products["mobile.cmcc.50"].offers[0].supplier',
    ]


def test_references_are_not_judged_when_suppliers_is_not_a_mapping() -> None:
    data: dict[str, Any] = valid()
    data["suppliers"] = ["fulu"]

    assert problems(data) == [("suppliers", "expected a mapping, got a list")]


def test_check_config_defaults_to_the_configs_own_names() -> None:
    config = parse_config(yaml.safe_dump(valid()), {})

    assert check_config(config) == []
    with pytest.raises(ConfigError):
        parse_config(yaml.safe_dump({**valid(), "suppliers": {}}), {})


def test_not_found_grace_must_cover_the_longest_submit() -> None:
    text = """
orders: {not_found_grace: 5s}
suppliers:
  a: {protocol: fulu, base_url: "http://127.0.0.1:1", credentials: {app_key: k, app_secret: s}, timeout: 8s}
"""
    with pytest.raises(ConfigError) as info:
        parse_config(text, {})
    [problem] = info.value.problems
    assert problem.path == "orders.not_found_grace"
    assert "9s" in problem.message
    parse_config(text.replace("5s", "9s"), {})


def _real_ofpay(data: dict[str, Any], **credentials: str) -> dict[str, Any]:
    """The sample with an ofpay supplier on the network: not simulated, not on this machine."""
    data["suppliers"]["ofpay"] = {
        "protocol": "ofpay",
        "base_url": "https://api.ofpay.example.com/",
        "credentials": {"userid": "A7654321", "password": "p4ss", "keystr": "K3y", **credentials},
    }
    return data


@pytest.mark.parametrize("keystr", ["OFCARD", "ofcard", " OFCARD "])
def test_ofpays_public_default_key_is_refused_for_a_real_supplier(keystr: str) -> None:
    [(path, message)] = problems(_real_ofpay(valid(), keystr=keystr))

    assert path == "suppliers.ofpay.credentials.keystr"
    assert message.startswith('is ofpay\'s public default "OFCARD"')


@pytest.mark.parametrize(
    ("key", "value"), [("password", "demo-password"), ("userid", "demo-user"), ("keystr", "Demo-Key")]
)
def test_demo_credentials_are_refused_for_a_real_supplier(key: str, value: str) -> None:
    [(path, message)] = problems(_real_ofpay(valid(), **{key: value}))

    assert path == f"suppliers.ofpay.credentials.{key}"
    assert message.startswith('is a demo value (starts with "demo-")')
    assert value not in message  # credentials are not echoed


def test_the_shipped_demo_secrets_are_refused_once_the_supplier_is_real() -> None:
    data = valid()
    fulu(data).update(
        base_url="https://openapi.fulu.example.com/",
        credentials={"app_key": "demo-app-key", "app_secret": "${FULU_APP_SECRET:-demo-app-secret}"},
    )

    assert [path for path, _ in problems(data)] == [
        "suppliers.fulu.credentials.app_key",
        "suppliers.fulu.credentials.app_secret",
    ]
    fulu(data)["credentials"]["app_key"] = "k-2041"
    assert parse_config(yaml.safe_dump(data), {"FULU_APP_SECRET": "s3cr3t"}).suppliers["fulu"].base_url


def test_demo_values_are_fine_for_simulated_and_local_suppliers() -> None:
    data = _real_ofpay(valid())
    data["suppliers"]["ofpay"].update(
        base_url="http://127.0.0.1:9103",
        credentials={"userid": "A1234567", "password": "demo-password", "keystr": "OFCARD"},
        simulate={"latency": "10ms"},
    )
    fulu(data)["credentials"] = {"app_key": "demo-app-key", "app_secret": "demo-app-secret"}  # at 127.0.0.1
    data["shops"]["demo"]["secret"] = "demo-secret"

    assert parse_config(yaml.safe_dump(data), {}).suppliers["ofpay"].simulate is not None


def test_the_demo_shop_secret_is_refused_when_every_supplier_is_real() -> None:
    data = valid()
    fulu(data)["base_url"] = "https://openapi.fulu.example.com/"
    data["shops"]["demo"]["secret"] = "demo-secret"

    [(path, message)] = problems(data)
    assert path == "shops.demo.secret"
    assert message.startswith('is a demo value (starts with "demo-") and no supplier is simulated')
    # One simulated (or local) supplier makes it a demo or a test bench, where the demo secret is expected.
    data["suppliers"]["local"] = {**fulu(data), "base_url": "http://localhost:9109"}
    assert parse_config(yaml.safe_dump(data), {}).shops["demo"].secret.reveal() == "demo-secret"


def test_the_shipped_gateway_yaml_pointed_at_real_suppliers_lists_every_demo_secret() -> None:
    doc = yaml.safe_load((Path(__file__).resolve().parents[2] / "gateway.yaml").read_text())
    for name, supplier in doc["suppliers"].items():
        del supplier["simulate"]
        supplier["base_url"] = f"https://{name}.example.com/"

    assert [path for path, _ in problems(doc)] == [
        "shops.demo.secret",
        "suppliers.fulu.credentials.app_key",
        "suppliers.fulu.credentials.app_secret",
        "suppliers.ofpay.credentials.password",
        "suppliers.ofpay.credentials.keystr",
        "suppliers.juhe.credentials.key",
        "suppliers.juhe.credentials.openid",
        "suppliers.dayuanren.credentials.apikey",
    ]
