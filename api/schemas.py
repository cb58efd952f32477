"""Request and response models of the HTTP contract (ARCHITECTURE.md §4a)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class RegisterCustomerRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "Ada Lovelace",
                    "email": "ada@example.com",
                    "phone": "+44 20 7946 0958",
                    "attributes": {"city": "London"},
                    "source": "web",
                }
            ]
        },
    )
    name: str = Field(max_length=1000)
    email: str | None = Field(default=None, max_length=320)
    phone: str | None = Field(default=None, max_length=64)
    attributes: dict[str, Any] = Field(default_factory=dict)
    source: str | None = Field(default=None, max_length=100)
    lifecycle_stage: str = "prospect"


class WriteResult(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "customer_id": "3f2b8c9e-1d2a-4b5c-8d9e-0f1a2b3c4d5e",
                    "version": 1,
                    "position": 42,
                }
            ]
        }
    )
    customer_id: str
    version: int
    position: int | None


class BatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    commands: list[dict[str, Any]] = Field(min_length=1, max_length=1000)


class BatchResult(BaseModel):
    results: list[dict[str, Any]]
