"""Log in with the API key for a session cookie (the web page, whose `<img>` cannot send a
header), and log out."""

from __future__ import annotations

import json

from fastapi import APIRouter, Depends, HTTPException, Request, Response

from xmodal.server.auth import COOKIE, same_secret, session_token
from xmodal.server.deps import get_service
from xmodal.server.service import Service

router = APIRouter(tags=["session"])
_MAX_KEY = 4096


async def _given_key(request: Request) -> str:
    declared = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if declared == "application/json":
        try:
            body = json.loads(await request.body())
        except ValueError:
            raise HTTPException(422, 'not JSON: send {"key": "..."}') from None
        key = body.get("key") if isinstance(body, dict) else None
    elif declared in ("application/x-www-form-urlencoded", "multipart/form-data"):
        key = (await request.form()).get("key")
    else:
        raise HTTPException(415, 'send the key as JSON {"key": ...} or a form field key')
    if not isinstance(key, str) or not key or len(key) > _MAX_KEY:
        raise HTTPException(422, "key: a non-empty string is required")
    return key


@router.post(
    "/login",
    status_code=204,
    responses={401: {"description": "wrong key"}},
    openapi_extra={
        "requestBody": {
            "content": {
                "application/json": {"schema": {"properties": {"key": {"type": "string"}}}},
                "application/x-www-form-urlencoded": {
                    "schema": {"properties": {"key": {"type": "string"}}}
                },
            }
        }
    },
)
async def login(request: Request, service: Service = Depends(get_service)) -> Response:
    """Check the API key and set an HttpOnly, SameSite=Strict session cookie for it."""
    given = await _given_key(request)
    expected = service.settings.api_key
    response = Response(status_code=204)
    if expected is None:
        return response  # nothing to log in to: every endpoint is open
    if not same_secret(given, expected):
        raise HTTPException(401, "wrong API key")
    response.set_cookie(
        COOKIE,
        session_token(expected),
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )
    return response


@router.post("/logout", status_code=204)
async def logout(request: Request) -> Response:
    """Forget the session cookie in this browser."""
    response = Response(status_code=204)
    response.delete_cookie(
        COOKIE, httponly=True, samesite="strict", secure=request.url.scheme == "https", path="/"
    )
    return response
