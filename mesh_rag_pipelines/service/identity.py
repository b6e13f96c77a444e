"""Who calls the service: a bearer token, verified, is the only source of a caller's groups.

Two kinds of token are accepted. An OIDC access or ID token (a JWT) is verified against the
configured issuer's signing keys (JWKS, found through the issuer's discovery document unless its
URL is configured): signature, expiry, issuer and audience; its groups are the configured claim.
An API key (`mrk_<id>_<secret>`, see store.api_keys) is looked up in the store on every request,
so revoking one takes effect on the next. Anything else is refused.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
from sqlalchemy import Engine

from mesh_rag_pipelines.settings import (
    DEFAULT_OIDC_GROUPS_CLAIM,
    OIDC_AUDIENCE,
    OIDC_GROUPS_CLAIM,
    OIDC_ISSUER,
    OIDC_JWKS_URL,
    Settings,
)
from mesh_rag_pipelines.store.api_keys import PREFIX, key_identity

# Signature algorithms accepted from an issuer: asymmetric only (an HMAC "key" would be public).
ALGORITHMS = ["RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "PS384", "PS512"]
DISCOVERY_TIMEOUT_SECONDS = 10.0


class Unauthenticated(Exception):
    """No valid identity: the request is refused with 401, saying why."""


@dataclass(frozen=True)
class Identity:
    subject: str  # a token's `sub`, or `key:<name>` for an API key
    kind: str  # "oidc" or "api_key"
    groups: tuple[str, ...]


@dataclass(frozen=True)
class OidcConfig:
    issuer: str
    audience: str
    groups_claim: str = DEFAULT_OIDC_GROUPS_CLAIM
    jwks_url: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> OidcConfig | None:
        """The configured issuer, or None when the service accepts API keys only."""
        issuer = settings.get(OIDC_ISSUER)
        if not issuer:
            return None
        audience = settings.required(OIDC_AUDIENCE, f"the audience tokens of {issuer} must name")
        return cls(
            issuer=issuer,
            audience=audience,
            groups_claim=settings.get(OIDC_GROUPS_CLAIM) or DEFAULT_OIDC_GROUPS_CLAIM,
            jwks_url=settings.get(OIDC_JWKS_URL),
        )


class OidcVerifier:
    """Verifies an issuer's JWTs; its keys are fetched once and again when a token names a key
    not seen yet (PyJWKClient), so the issuer may rotate keys."""

    def __init__(self, config: OidcConfig):
        self.config = config
        self._client: jwt.PyJWKClient | None = None
        self._lock = threading.Lock()

    def _keys(self) -> jwt.PyJWKClient:
        with self._lock:
            if self._client is None:
                url = self.config.jwks_url or _discover_jwks_url(self.config.issuer)
                self._client = jwt.PyJWKClient(url, cache_keys=True)
            return self._client

    def verify(self, token: str) -> Identity:
        try:
            key = self._keys().get_signing_key_from_jwt(token)
            claims: dict[str, Any] = jwt.decode(
                token,
                key.key,
                algorithms=ALGORITHMS,
                audience=self.config.audience,
                issuer=self.config.issuer,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except (jwt.PyJWTError, httpx.HTTPError) as exc:
            raise Unauthenticated(f"invalid token: {exc}") from None
        groups = claims.get(self.config.groups_claim, [])
        if isinstance(groups, str):
            groups = groups.split()
        if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
            raise Unauthenticated(
                f"invalid token: claim {self.config.groups_claim!r} is not a list of groups"
            )
        return Identity(str(claims["sub"]), "oidc", tuple(groups))


def _discover_jwks_url(issuer: str) -> str:
    url = issuer.rstrip("/") + "/.well-known/openid-configuration"
    try:
        reply = httpx.get(url, timeout=DISCOVERY_TIMEOUT_SECONDS)
        reply.raise_for_status()
        return str(reply.json()["jwks_uri"])
    except (httpx.HTTPError, ValueError, KeyError) as exc:
        raise Unauthenticated(f"cannot find the signing keys of issuer {issuer}: {exc}") from None


class Authenticator:
    """Turns an Authorization header into a verified identity, or refuses it."""

    def __init__(self, serving: Engine, oidc: OidcConfig | None):
        self.serving = serving
        self.oidc = OidcVerifier(oidc) if oidc else None

    def identify(self, authorization: str | None) -> Identity:
        scheme, _, token = (authorization or "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Unauthenticated("a bearer token is required (Authorization: Bearer <token>)")
        if token.startswith(f"{PREFIX}_"):
            found = key_identity(self.serving, token)
            if found is None:
                raise Unauthenticated("invalid API key: unknown, revoked or expired")
            return Identity(f"key:{found.name}", "api_key", found.groups)
        if self.oidc is None:
            raise Unauthenticated("invalid token: this service accepts API keys only")
        return self.oidc.verify(token)
