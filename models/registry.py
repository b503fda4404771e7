"""The model registry: one folder per version, a ``current`` pointer, atomic promotion.

``<model_dir>/<version>/model.onnx`` and ``metadata.json`` hold a model; the file
``<model_dir>/current`` names the promoted version. Writers build a version in a
temporary folder and rename it into place, and replace the pointer atomically, so a
reader polling the pointer never sees half a model.
"""

from __future__ import annotations

import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

POINTER = "current"


class ModelRegistry:
    def __init__(self, root: Path) -> None:
        self.root = root

    def versions(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if (p / "metadata.json").is_file())

    def current(self) -> str | None:
        pointer = self.root / POINTER
        try:
            version = pointer.read_text().strip()
        except FileNotFoundError:
            return None
        return version if (self.root / version / "model.onnx").is_file() else None

    def pointer_stamp(self) -> float:
        """Changes whenever a version is promoted; cheap enough to poll."""
        try:
            return (self.root / POINTER).stat().st_mtime
        except FileNotFoundError:
            return 0.0

    def path(self, version: str) -> Path:
        return self.root / version

    def metadata(self, version: str) -> dict[str, Any]:
        data: dict[str, Any] = orjson.loads((self.root / version / "metadata.json").read_bytes())
        return data

    def register(self, onnx_bytes: bytes, metadata: dict[str, Any], promote: bool = True) -> str:
        self.root.mkdir(parents=True, exist_ok=True)
        version = "m-" + datetime.now(UTC).strftime("%Y%m%d-%H%M%S-%f")
        metadata = {**metadata, "version": version}
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=self.root))
        (staging / "model.onnx").write_bytes(onnx_bytes)
        (staging / "metadata.json").write_bytes(orjson.dumps(metadata, option=orjson.OPT_INDENT_2))
        os.replace(staging, self.root / version)
        if promote:
            self.promote(version)
        return version

    def promote(self, version: str) -> None:
        if not (self.root / version / "model.onnx").is_file():
            raise FileNotFoundError(f"no model {version} in {self.root}")
        tmp = self.root / f".{POINTER}.{os.getpid()}"
        tmp.write_text(version + "\n")
        os.replace(tmp, self.root / POINTER)
