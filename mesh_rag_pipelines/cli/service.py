"""`mesh-rag serve` and `mesh-rag keys`: the retrieval service and its API keys."""

from __future__ import annotations

import argparse
import getpass
from datetime import UTC, datetime

from mesh_rag_pipelines.cli.session import Session


def serve(session: Session, host: str, port: int) -> None:
    """The service in this process until it is stopped (SIGINT or SIGTERM)."""
    import uvicorn

    from mesh_rag_pipelines.service import create_app
    from mesh_rag_pipelines.service.identity import OidcConfig

    OidcConfig.from_settings(session.settings)  # a half-configured issuer stops us here
    app = create_app(session.settings)
    print(f"mesh-rag serve: http://{host}:{port} (API: /v1, OpenAPI: /docs)", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)


def keys(session: Session, args: argparse.Namespace) -> None:
    from mesh_rag_pipelines.connections import store_engine
    from mesh_rag_pipelines.contracts.model import parse_duration
    from mesh_rag_pipelines.governance.access import InvalidCallerGroup
    from mesh_rag_pipelines.store.api_keys import create_key, list_keys, revoke_key

    engine = store_engine(session.settings)
    if args.action == "create":
        if not args.name or not args.group:
            raise SystemExit("mesh-rag keys create needs --name and at least one --group")
        try:
            expires_at = datetime.now(UTC) + parse_duration(args.expires)
            key_id, key = create_key(
                engine, args.name, args.group, expires_at, created_by=getpass.getuser()
            )
        except (ValueError, InvalidCallerGroup) as exc:
            raise SystemExit(f"mesh-rag keys create: {exc}") from None
        print(
            f"key {key_id} for {args.name.strip()}, groups {sorted(set(args.group))}, "
            f"expires {expires_at:%Y-%m-%d %H:%M} UTC"
        )
        print("the key (shown only now; the store keeps its hash):")
        print(key)
    elif args.action == "list":
        found = list_keys(engine)
        if not found:
            print("no API keys")
        for k in found:
            state = f"revoked {k.revoked_at:%Y-%m-%d %H:%M}" if k.revoked_at else "active"
            if not k.revoked_at and k.expires_at <= datetime.now(UTC):
                state = "expired"
            print(
                f"{k.id}  {k.name}  groups {','.join(k.groups)}  "
                f"expires {k.expires_at:%Y-%m-%d %H:%M}  {state}"
            )
    else:
        if not args.key_id:
            raise SystemExit("mesh-rag keys revoke needs --id (`mesh-rag keys list` shows ids)")
        if not revoke_key(engine, args.key_id):
            raise SystemExit(f"mesh-rag keys revoke: no active key {args.key_id!r}")
        print(f"key {args.key_id} revoked: refused from the next request on")
