"""The lesson's service, the reference of bench/load.sh: FastAPI over SQLite, cached in
memcached with pymemcache as the lesson writes it (users_all for 60 s, user_<id> for 120 s,
both deleted by PUT and DELETE /users/{id}). Debian's python3-fastapi, python3-uvicorn and
python3-pymemcache; run by uvicorn, one worker, as the lesson would be:

  USERS_DB=data/users.db MEMCACHED_PORT=11211 \
    /usr/bin/python3 -m uvicorn --app-dir bench fastapi_service:app --port 8001

The lesson's client is one pymemcache Client shared by every request (lru_cache); FastAPI
runs plain `def` endpoints on a thread pool, so here it is pymemcache's thread-safe
PooledClient. The database is the one the example service seeds (users: id, name, email).
"""

import json
import os
import sqlite3
import threading
from functools import lru_cache
from typing import List

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Response
from pydantic import BaseModel
from pymemcache.client.base import PooledClient

DB_PATH = os.environ.get("USERS_DB", "data/users.db")
MEMCACHED = ("127.0.0.1", int(os.environ.get("MEMCACHED_PORT", "11211")))


class UserIn(BaseModel):
    name: str
    email: str


class UserOut(BaseModel):
    id: int
    name: str
    email: str


_local = threading.local()


def db() -> sqlite3.Connection:
    """One connection per worker thread (sqlite3 connections stay in their thread)."""
    conn = getattr(_local, "conn", None)
    if conn is None:
        conn = sqlite3.connect(DB_PATH, timeout=5)
        conn.row_factory = sqlite3.Row
        _local.conn = conn
    return conn


def list_users() -> List[UserOut]:
    rows = db().execute("SELECT id, name, email FROM users ORDER BY id").fetchall()
    return [UserOut(**dict(r)) for r in rows]


def find_user(user_id: int):
    row = db().execute("SELECT id, name, email FROM users WHERE id = ?", (user_id,)).fetchone()
    return UserOut(**dict(row)) if row else None


@lru_cache()
def get_memcached_client() -> PooledClient:
    return PooledClient(MEMCACHED, serde=None, max_pool_size=64, connect_timeout=1, timeout=1)


router = APIRouter(prefix="/users", tags=["users"])


@router.get("/", response_model=List[UserOut])
def get_users(cache=Depends(get_memcached_client)):
    key = "users_all"
    cached = cache.get(key)
    if cached:
        return json.loads(cached.decode("utf-8"))
    result = [u.dict() for u in list_users()]
    cache.set(key, json.dumps(result), expire=60)
    return result


@router.get("/{id}", response_model=UserOut)
def get_user(id: int, cache=Depends(get_memcached_client)):
    key = f"user_{id}"
    cached = cache.get(key)
    if cached:
        return json.loads(cached.decode("utf-8"))
    user = find_user(id)
    if user is None:
        raise HTTPException(status_code=404, detail="Not Found")
    cache.set(key, json.dumps(user.dict()), expire=120)
    return user


@router.put("/{id}", response_model=UserOut)
def update_user(id: int, body: UserIn, cache=Depends(get_memcached_client)):
    conn = db()
    with conn:
        cur = conn.execute(
            "UPDATE users SET name = ?, email = ? WHERE id = ?", (body.name, body.email, id)
        )
    if cur.rowcount == 0:
        raise HTTPException(status_code=404, detail="Not Found")
    cache.delete(f"user_{id}")
    cache.delete("users_all")
    return UserOut(id=id, name=body.name, email=body.email)


@router.delete("/{id}", status_code=204)
def delete_user(id: int, cache=Depends(get_memcached_client)):
    conn = db()
    with conn:
        cur = conn.execute("DELETE FROM users WHERE id = ?", (id,))
    if cur.rowcount == 0:
        raise HTTPException(status_code=404, detail="Not Found")
    cache.delete(f"user_{id}")
    cache.delete("users_all")
    return Response(status_code=204)


app = FastAPI()
app.include_router(router)
