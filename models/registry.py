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
CHALLENGER = "challenger"
HISTORY = "promotions.log"


class ModelRegistry:
    def __init__(self, root: Path) -> None:
        self.root = root

    def versions(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if (p / "metadata.json").is_file())

    def current(self) -> str | None:
        return self._read(POINTER)

    def challenger(self) -> str | None:
        """A model scored in shadow beside the current one; its scores go to the log."""
        return self._read(CHALLENGER)

    def _read(self, pointer: str) -> str | None:
        try:
            version = (self.root / pointer).read_text().strip()
        except FileNotFoundError:
            return None
        return version if version and (self.root / version / "model.onnx").is_file() else None

    def pointer_stamp(self) -> float:
        """Changes whenever a version is promoted or a challenger set; cheap to poll."""
        stamps = []
        for pointer in (POINTER, CHALLENGER):
            try:
                stamps.append((self.root / pointer).stat().st_mtime_ns)
            except FileNotFoundError:
                stamps.append(0)
        return float(hash(tuple(stamps)))

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
        self._point(POINTER, version)
        with (self.root / HISTORY).open("a") as log:
            log.write(f"{datetime.now(UTC).isoformat()} {version}\n")
        if self.challenger() == version:
            self.set_challenger(None)

    def set_challenger(self, version: str | None) -> None:
        if version is None:
            (self.root / CHALLENGER).unlink(missing_ok=True)
            return
        self._point(CHALLENGER, version)

    def rollback(self) -> str:
        """Promote the version that was current before the current one."""
        history = self.promotions()
        current = self.current()
        earlier = [v for v in reversed(history) if v != current and (self.root / v).is_dir()]
        if not earlier:
            raise LookupError("no earlier promoted model to roll back to")
        self.promote(earlier[0])
        return earlier[0]

    def promotions(self) -> list[str]:
        try:
            lines = (self.root / HISTORY).read_text().splitlines()
        except FileNotFoundError:
            return []
        return [line.split()[1] for line in lines if len(line.split()) == 2]

    def _point(self, pointer: str, version: str) -> None:
        if not (self.root / version / "model.onnx").is_file():
            raise FileNotFoundError(f"no model {version} in {self.root}")
        tmp = self.root / f".{pointer}.{os.getpid()}"
        tmp.write_text(version + "\n")
        os.replace(tmp, self.root / pointer)
