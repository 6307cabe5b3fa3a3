"""Pareto's own check of the ID token: msal (>= 1.38) hands it over without verifying it.

Checked: the signature against the issuer's published keys (JWKS, cached, fetched again when a token names a key
the cache does not know), `iss`, `aud` (and `azp` when there are several audiences), `exp`/`nbf`/`iat` with a
small leeway, `tid` against the configured tenant, `oid` present, and the nonce of this sign-in.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jwt

from .config import SsoConfig

CLOCK_LEEWAY_SECONDS = 60
JWKS_MAX_AGE_SECONDS = 24 * 3600
# A token naming an unknown key makes Pareto fetch the JWKS again at most this often per provider, so that tokens
# with made-up key ids cannot make it hammer the provider.
JWKS_MIN_REFRESH_SECONDS = 60
# Asymmetric algorithms only: never "none", never HS* (a public key must not become an HMAC secret).
ASYMMETRIC = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512")
KEY_TYPES = {"RS": "RSA", "PS": "RSA", "ES": "EC"}


class TokenRejected(Exception):
    def __init__(self, reason: str, detail: str, claims: dict[str, Any] | None = None) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.claims = claims or {}  # as the token says, NOT verified: for the audit record only


@dataclass
class _KeySet:
    keys: list[jwt.PyJWK]
    fetched_at: float
    refreshed_at: float = field(default=-float("inf"))  # last fetch caused by an unknown key


class JwksCache:
    """Signing keys per JWKS URL, shared by every sign-in of this process."""

    def __init__(self, fetch: Callable[[str], dict[str, Any]]) -> None:
        self._fetch = fetch
        self._sets: dict[str, _KeySet] = {}
        self._lock = threading.Lock()

    def clear(self) -> None:
        with self._lock:
            self._sets.clear()

    def keys(self, uri: str) -> list[jwt.PyJWK]:
        with self._lock:
            cached = self._sets.get(uri)
            if cached is not None and time.monotonic() - cached.fetched_at < JWKS_MAX_AGE_SECONDS:
                return cached.keys
        return self._load(uri, refreshed=False)

    def refresh(self, uri: str) -> list[jwt.PyJWK] | None:
        """Fetch again because a token names a key we don't have; None when that was done too recently."""
        with self._lock:
            cached = self._sets.get(uri)
            if cached is not None and time.monotonic() - cached.refreshed_at < JWKS_MIN_REFRESH_SECONDS:
                return None
        return self._load(uri, refreshed=True)

    def _load(self, uri: str, *, refreshed: bool) -> list[jwt.PyJWK]:
        document = self._fetch(uri)
        keys = []
        for entry in document.get("keys", []) if isinstance(document.get("keys"), list) else []:
            if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
                continue
            try:
                keys.append(jwt.PyJWK(entry))
            except jwt.PyJWTError:
                continue  # a key type this library cannot use: skip it, as RFC 7517 says
        now = time.monotonic()
        with self._lock:
            previous = self._sets.get(uri)
            self._sets[uri] = _KeySet(
                keys=keys,
                fetched_at=now,
                refreshed_at=now if refreshed else (previous.refreshed_at if previous else -float("inf")),
            )
        return keys


def _candidates(keys: list[jwt.PyJWK], *, kid: str | None, alg: str) -> list[jwt.PyJWK]:
    kty = KEY_TYPES[alg[:2]]
    usable = [k for k in keys if k.key_type == kty]
    if kid is not None:
        return [k for k in usable if k.key_id == kid]
    # No key id in the token (some providers leave it out): any of the provider's keys of the right type.
    return usable


def unverified_claims(token: str) -> dict[str, Any]:
    """What the token claims, unchecked: only for telling a person (and the audit log) what was refused."""
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return {}
    keep = ("iss", "aud", "tid", "oid", "sub", "exp", "nbf", "iat", "preferred_username")
    return {k: claims[k] for k in keep if k in claims}


def verify_id_token(
    token: str,
    *,
    config: SsoConfig,
    issuer: str,
    jwks_uri: str,
    nonce: str,
    algorithms: list[str] | None,
    jwks: JwksCache,
) -> dict[str, Any]:
    """The verified claims, or TokenRejected with a reason code."""
    seen = unverified_claims(token)
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise TokenRejected("malformed", f"not a JWT: {exc}", seen) from exc
    allowed = [a for a in (algorithms or ["RS256"]) if a in ASYMMETRIC] or ["RS256"]
    alg = header.get("alg")
    if alg not in allowed:
        raise TokenRejected("algorithm", f"signed with {alg!r}; the provider publishes {allowed}", seen)
    kid = header.get("kid")

    claims = _decode_with(token, _candidates(jwks.keys(jwks_uri), kid=kid, alg=alg), config, issuer, alg, seen)
    if claims is None:
        # The provider may have rotated its keys since the JWKS was cached.
        fresh = jwks.refresh(jwks_uri)
        if fresh is not None:
            claims = _decode_with(token, _candidates(fresh, kid=kid, alg=alg), config, issuer, alg, seen)
    if claims is None:
        if kid is not None and not _candidates(jwks.keys(jwks_uri), kid=kid, alg=alg):
            raise TokenRejected("unknown_key", f"the provider publishes no key {kid!r}", seen)
        raise TokenRejected("signature", "the signature does not match the provider's keys", seen)

    audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
    if len(audiences) > 1 and claims.get("azp") != config.client_id:
        raise TokenRejected("audience", f"several audiences and azp {claims.get('azp')!r} is not this app", seen)
    if config.is_entra:
        if str(claims.get("tid", "")).lower() != config.tenant_id.lower():
            raise TokenRejected("tenant", f"tenant {claims.get('tid')!r} is not {config.tenant_id!r}", seen)
        if not claims.get("oid"):
            raise TokenRejected("malformed", "the token has no oid (object id)", seen)
    if claims.get("nonce") != nonce:
        raise TokenRejected("nonce", "the token's nonce is not the one of this sign-in", seen)
    return claims


def _decode_with(
    token: str,
    keys: list[jwt.PyJWK],
    config: SsoConfig,
    issuer: str,
    alg: str,
    seen: dict[str, Any],
) -> dict[str, Any] | None:
    """Claims checked with the first key whose signature matches; None when none matches."""
    for key in keys:
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key=key.key,
                algorithms=[alg],
                audience=config.client_id,
                issuer=issuer,
                leeway=CLOCK_LEEWAY_SECONDS,
                options={"require": ["exp", "iat", "iss", "aud", "sub"]},
            )
        except jwt.InvalidSignatureError:
            continue
        except jwt.ExpiredSignatureError as exc:
            raise TokenRejected("expired", str(exc), seen) from exc
        except jwt.ImmatureSignatureError as exc:
            raise TokenRejected("not_yet_valid", str(exc), seen) from exc
        except jwt.InvalidAudienceError as exc:
            raise TokenRejected("audience", f"{exc}: {seen.get('aud')!r} is not {config.client_id!r}", seen) from exc
        except jwt.InvalidIssuerError as exc:
            raise TokenRejected("issuer", f"{exc}: {seen.get('iss')!r} is not {issuer!r}", seen) from exc
        except jwt.PyJWTError as exc:
            raise TokenRejected("malformed", str(exc), seen) from exc
        return claims
    return None
