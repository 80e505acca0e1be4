"""Store URLs as logs, pages and errors may show them: the password masked, whatever the scheme."""

from __future__ import annotations

from typing import Final

MASK: Final = "****"


def redact_url(url: str) -> str:
    """`url` with the password of its `user:password@` part masked, for logs and pages; any scheme.

    The last `@` ends the credentials, so an unencoded `@` in a password is masked too; a URL with no
    host part (`sqlite:///path`) is returned as it is.
    """
    scheme, sep, rest = url.partition("://")
    userinfo, at, location = rest.rpartition("@")
    user, colon, _ = userinfo.partition(":")
    if not (sep and at and colon) or rest.startswith("/"):
        return url
    return f"{scheme}://{user}:{MASK}@{location}"
