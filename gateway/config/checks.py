"""Rules of `gateway.yaml` that span fields or sections: references, adapter settings, cross-field limits.

Runs on the converted model and returns (key path, message) findings; it never raises or does I/O.
Single-field rules (types, ranges, patterns) belong to the model's markers, not here.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator, Mapping, Set
from fnmatch import fnmatchcase
from typing import Final, TypeAlias
from urllib.parse import urlsplit

from adapters.interface import AccountKind, AdapterFactory, AdapterSettings, InvalidSettings
from gateway.config.model import GatewayConfig, NotifyConfig, ProductConfig, ShopConfig, SupplierConfig

KeyPath: TypeAlias = tuple[str | int, ...]
"""Where a value sits in the YAML: map keys and field names as strings, list positions as ints."""

Finding: TypeAlias = tuple[KeyPath, str]

DEMO_PREFIX: Final = "demo-"
"""How the shipped gateway.yaml marks its made-up secrets (demo-app-secret, demo-secret, ...)."""

PUBLIC_DEFAULTS: Final = {("ofpay", "keystr"): "OFCARD"}
"""Credentials a protocol documents a default for: whoever reads the protocol can sign with them."""

_LABEL: Final = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST_NAME: Final = re.compile(rf"(?=.{{1,253}}\Z){_LABEL}(?:\.{_LABEL})*")


def check_config(
    config: GatewayConfig,
    *,
    supplier_names: Set[str] | None = None,
    product_names: Set[str] | None = None,
    adapters: Mapping[str, AdapterFactory] | None = None,
) -> list[Finding]:
    """Every cross-reference problem of `config`, in document order of sections.

    `supplier_names` and `product_names` default to the config's own keys. The loader passes the
    names the YAML declares instead, so an entry dropped for its own errors is not also reported
    as missing wherever it is referenced. `adapters` defaults to the protocol registry.
    """
    if adapters is None:
        # Imported on use: the registry pulls in every protocol module, which the model, the
        # loader's conversion and the schema generator never need.
        from adapters.registry import ADAPTERS

        adapters = ADAPTERS
    suppliers = set(config.suppliers) if supplier_names is None else supplier_names
    products = set(config.products) if product_names is None else product_names
    findings = list(_backoff_limits(config.notify))
    findings.extend(_not_found_grace(config))
    real_deployment = not any(_on_this_machine(supplier) for supplier in config.suppliers.values())
    for name, shop in config.shops.items():
        findings.extend(_shop_products(name, shop, products))
        findings.extend(_notify_hosts(name, shop))
        if real_deployment:
            findings.extend(_demo_shop_secret(name, shop))
    for name, supplier in config.suppliers.items():
        findings.extend(_adapter_settings(name, supplier, adapters))
        findings.extend(_breaker_limits(name, supplier))
        findings.extend(_simulator_host(name, supplier))
        if not _on_this_machine(supplier):
            findings.extend(_demo_credentials(name, supplier))
    for name, product in config.products.items():
        findings.extend(_offer_suppliers(name, product, suppliers))
        findings.extend(_number_rules(name, product))
    return findings


def _not_found_grace(config: GatewayConfig) -> Iterator[Finding]:
    """'Not found' may only mean 'not executed' once no submit of that attempt can still arrive."""
    longest = max((s.connect_timeout + s.timeout for s in config.suppliers.values()), default=0.0)
    if config.orders.not_found_grace < longest:
        yield (
            ("orders", "not_found_grace"),
            f"must be at least {_seconds(longest)}, the longest supplier connect_timeout + timeout: "
            "a 'not found' read sooner may come while the submit is still on its way, and failing "
            "over then could charge twice",
        )


def _backoff_limits(notify: NotifyConfig) -> Iterator[Finding]:
    if notify.backoff.max < notify.backoff.initial:
        yield (
            ("notify", "backoff", "max"),
            f"must be at least backoff.initial ({_seconds(notify.backoff.initial)})",
        )


def _shop_products(name: str, shop: ShopConfig, products: Set[str]) -> Iterator[Finding]:
    path: KeyPath = ("shops", name, "products")
    if not shop.products:
        yield path, "allows no product: the list of product patterns is empty"
        return
    if any(fnmatchcase(product, pattern) for pattern in shop.products for product in products):
        return
    yield path, "allows no product: none of its patterns matches a configured product"
    for index, pattern in enumerate(shop.products):
        yield (*path, index), f'"{pattern}" matches no product'


def _notify_hosts(name: str, shop: ShopConfig) -> Iterator[Finding]:
    for index, host in enumerate(shop.notify_hosts):
        if not _is_bare_host(host):
            yield (
                ("shops", name, "notify_hosts", index),
                f'"{host}" is not a bare host name or IP address such as shop.example.com or 127.0.0.1 '
                "(no scheme, port, path or brackets)",
            )


def _is_bare_host(host: str) -> bool:
    if _HOST_NAME.fullmatch(host):
        return True
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _adapter_settings(
    name: str, supplier: SupplierConfig, adapters: Mapping[str, AdapterFactory]
) -> Iterator[Finding]:
    factory = adapters.get(supplier.protocol)
    if factory is None:
        valid = ", ".join(sorted(adapters))
        yield ("suppliers", name, "protocol"), f'unknown protocol "{supplier.protocol}"; valid: {valid}'
        return
    settings = AdapterSettings(
        name=name,
        base_url=supplier.base_url,
        credentials={key: secret.reveal() for key, secret in supplier.credentials.items()},
        codes=supplier.codes,
    )
    try:
        factory(settings)
    except InvalidSettings as error:
        for key, message in error.problems:
            # Adapters name keys relative to the supplier with dots: "credentials.app_secret".
            yield ("suppliers", name, *(part for part in key.split(".") if part)), message


def _breaker_limits(name: str, supplier: SupplierConfig) -> Iterator[Finding]:
    breaker = supplier.breaker
    if breaker.max_open_for < breaker.open_for:
        yield (
            ("suppliers", name, "breaker", "max_open_for"),
            f"must be at least open_for ({_seconds(breaker.open_for)})",
        )


def _simulator_host(name: str, supplier: SupplierConfig) -> Iterator[Finding]:
    if supplier.simulate is None:
        return
    try:
        host = urlsplit(supplier.base_url).hostname
    except ValueError:
        host = None
    if host is None or not _is_loopback(host):
        yield (
            ("suppliers", name, "simulate"),
            f'the bundled simulator serves only on this machine: base_url host "{host or ""}" '
            "must be localhost or a loopback address",
        )


def _on_this_machine(supplier: SupplierConfig) -> bool:
    """Served by the bundled simulator, or at a loopback base_url (a test double or a simulator
    started apart): where demo secrets are expected and reach no real supplier."""
    if supplier.simulate is not None:
        return True
    try:
        host = urlsplit(supplier.base_url).hostname
    except ValueError:
        return False
    return host is not None and _is_loopback(host)


def _demo_credentials(name: str, supplier: SupplierConfig) -> Iterator[Finding]:
    """A real supplier must get the credentials it issued, never the demo's or a protocol's default:
    those are public, so anyone could sign callbacks as the supplier (and mark orders paid)."""
    for key, secret in supplier.credentials.items():
        value = secret.reveal()
        default = PUBLIC_DEFAULTS.get((supplier.protocol, key))
        if default is not None and value.strip().upper() == default:
            yield (
                ("suppliers", name, "credentials", key),
                f'is {supplier.protocol}\'s public default "{default}": set the {key} the supplier issued',
            )
        elif _is_demo(value):
            yield (
                ("suppliers", name, "credentials", key),
                f'is a demo value (starts with "{DEMO_PREFIX}") and this supplier is neither simulated '
                "nor on this machine: set the credential the supplier issued",
            )


def _demo_shop_secret(name: str, shop: ShopConfig) -> Iterator[Finding]:
    """With every supplier real, the shipped demo shop secret would let anyone place paid orders."""
    if _is_demo(shop.secret.reveal()):
        yield (
            ("shops", name, "secret"),
            f'is a demo value (starts with "{DEMO_PREFIX}") and no supplier is simulated or on this '
            "machine: give the shop a secret of its own",
        )


def _is_demo(value: str) -> bool:
    return value.strip().lower().startswith(DEMO_PREFIX)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _offer_suppliers(name: str, product: ProductConfig, suppliers: Set[str]) -> Iterator[Finding]:
    first_index: dict[str, int] = {}
    for index, offer in enumerate(product.offers):
        path: KeyPath = ("products", name, "offers", index, "supplier")
        if offer.supplier not in suppliers:
            defined = ", ".join(sorted(suppliers)) or "none"
            yield path, f'unknown supplier "{offer.supplier}"; defined suppliers: {defined}'
        if offer.supplier in first_index:
            yield (
                path,
                f'supplier "{offer.supplier}" is already offered at offers[{first_index[offer.supplier]}]',
            )
        else:
            first_index[offer.supplier] = index


def _number_rules(name: str, product: ProductConfig) -> Iterator[Finding]:
    """`carrier` and offers' provinces judge a mobile number's prefix: other accounts have none."""
    mobile = product.account is AccountKind.MOBILE_CN
    if product.carrier is not None and not mobile:
        yield (
            ("products", name, "carrier"),
            f"applies only to mobile_cn products; this product's account is {product.account.value}",
        )
    for index, offer in enumerate(product.offers):
        path: KeyPath = ("products", name, "offers", index)
        if offer.provinces is not None and offer.exclude_provinces:
            yield (
                path,
                "has both provinces and exclude_provinces: list the provinces the offer serves, "
                "or those it does not serve, not both",
            )
        for key, listed in (
            ("provinces", offer.provinces or ()),
            ("exclude_provinces", offer.exclude_provinces),
        ):
            if listed and not mobile:
                yield (
                    (*path, key),
                    f"applies only to mobile_cn products; this product's account is {product.account.value}",
                )
            first: dict[str, int] = {}
            for position, province in enumerate(listed):
                if province in first:
                    yield (*path, key, position), f'"{province}" is already listed at [{first[province]}]'
                else:
                    first[province] = position


def _seconds(value: float) -> str:
    return f"{value:g}s"
