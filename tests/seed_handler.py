"""The seed's example customer handler, written as a ThunderPhone customer writes it.

It checks `X-ThunderPhone-Signature` (V1, HMAC-SHA256 of the body) against its secret and picks
a prompt by the caller's area code. phonebooth must work with it unchanged.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

from fastapi import FastAPI, HTTPException, Request


def create_seed_app(secret: str) -> FastAPI:
    app = FastAPI()

    @app.post("/thunderphone-webhook")
    async def incoming(request: Request) -> dict[str, Any]:
        body = await request.body()
        expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, request.headers.get("X-ThunderPhone-Signature", "")):
            raise HTTPException(status_code=401, detail="bad signature")
        event = json.loads(body)
        caller = event["data"]["from_number"]
        if caller.startswith("+1415"):
            prompt = "You are the San Francisco office assistant. Mention the Bay Area."
        else:
            prompt = "You are the New York office assistant. Mention Manhattan."
        return {"prompt": prompt, "voice": "en-US-Standard-Journey-D", "product": "spark"}

    return app
