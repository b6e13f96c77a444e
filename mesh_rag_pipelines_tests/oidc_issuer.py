"""A real OIDC issuer on loopback: discovery document and JWKS over HTTP, for an RSA key made
here, and tokens signed with it (PyJWT), as an identity provider would issue them."""

from __future__ import annotations

import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm


def new_rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


class OidcIssuer:
    """Serves `/.well-known/openid-configuration` and `/jwks.json` until stopped."""

    def __init__(self) -> None:
        self.key = new_rsa_key()
        self.key_id = uuid.uuid4().hex[:12]
        self.discovery_requests = 0
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                if self.path == "/.well-known/openid-configuration":
                    issuer.discovery_requests += 1
                    body: dict[str, Any] = {
                        "issuer": issuer.url,
                        "jwks_uri": f"{issuer.url}/jwks.json",
                        "id_token_signing_alg_values_supported": ["RS256"],
                    }
                elif self.path == "/jwks.json":
                    body = {"keys": [issuer.public_jwk()]}
                else:
                    self.send_error(404)
                    return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def public_jwk(self) -> dict[str, Any]:
        jwk: dict[str, Any] = json.loads(RSAAlgorithm.to_jwk(self.key.public_key()))
        jwk.update(kid=self.key_id, use="sig", alg="RS256")
        return jwk

    def token(
        self,
        subject: str,
        groups: list[str],
        audience: str,
        *,
        lifetime: float = 300,
        issuer: str | None = None,
        key: rsa.RSAPrivateKey | None = None,
        groups_claim: str = "groups",
    ) -> str:
        now = int(time.time())
        claims = {
            "iss": issuer or self.url,
            "sub": subject,
            "aud": audience,
            "iat": now,
            "exp": now + int(lifetime),
            groups_claim: groups,
        }
        return jwt.encode(claims, key or self.key, algorithm="RS256", headers={"kid": self.key_id})

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)
