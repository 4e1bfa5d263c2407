"""``fusion-gateway init``: copy the packaged default config and the examples into a directory to edit."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from gateway.config.loader import PACKAGED_DEFAULTS
from gateway.wire.errors import ConfigError


@dataclass(frozen=True, slots=True)
class Written:
    config: Path
    examples: list[Path]


def starter_files() -> list[tuple[Path, Path]]:
    """(packaged file, path relative to the target directory) for everything ``init`` writes."""
    files = [(PACKAGED_DEFAULTS / "gateway.yaml", Path("gateway.yaml"))]
    for example in sorted((PACKAGED_DEFAULTS / "examples").glob("*.yaml")):
        files.append((example, Path("examples") / example.name))
    return files


def write_starter(directory: str | Path, *, force: bool = False) -> Written:
    """Write ``gateway.yaml`` and ``examples/*.yaml`` under ``directory``; never overwrite unless ``force``."""
    target = Path(directory)
    files = starter_files()
    existing = [str(target / rel) for _, rel in files if (target / rel).exists()]
    if existing and not force:
        raise ConfigError(f"not overwriting {', '.join(existing)} (use --force to replace)")
    for src, rel in files:
        (target / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, target / rel)
    return Written(config=target / "gateway.yaml", examples=[target / rel for _, rel in files[1:]])
