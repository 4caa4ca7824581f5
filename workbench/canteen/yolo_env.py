"""Make ultralytics work offline, inside the project, before it is imported.

Ultralytics reaches for the network on import and at plot time (settings sync, the
Arial fonts, pretrained weights for AMP checks). On the city's machines there is no
internet, so call :func:`ensure_yolo_env` BEFORE ``import ultralytics``::

    from workbench.canteen.yolo_env import ensure_yolo_env
    ensure_yolo_env()
    from ultralytics import YOLO

It sets ``YOLO_OFFLINE=1``, points ``YOLO_CONFIG_DIR`` at the project-local ``.yolo/``
(ignored by git; override with the env var or the ``config_dir`` argument) and copies
matplotlib's DejaVuSans to the Arial.ttf / Arial.Unicode.ttf names ultralytics looks for.
No heavy imports here: matplotlib is located, not imported.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

from workbench import config

FONT_NAMES = ("Arial.ttf", "Arial.Unicode.ttf")


def _dejavu_sans() -> Path | None:
    """Path of matplotlib's bundled DejaVuSans.ttf, without importing matplotlib."""
    spec = importlib.util.find_spec("matplotlib")
    if spec is None or not spec.submodule_search_locations:
        return None
    for base in spec.submodule_search_locations:
        font = Path(base) / "mpl-data" / "fonts" / "ttf" / "DejaVuSans.ttf"
        if font.is_file():
            return font
    return None


def ensure_yolo_env(config_dir: str | os.PathLike | None = None) -> Path:
    """Prepare the offline ultralytics environment; returns ultralytics' settings dir.

    Idempotent and cheap. An already set ``YOLO_CONFIG_DIR`` is kept unless
    ``config_dir`` is given.
    """
    os.environ["YOLO_OFFLINE"] = "1"
    if config_dir is not None:
        os.environ["YOLO_CONFIG_DIR"] = str(Path(config_dir).resolve())
    else:
        os.environ.setdefault("YOLO_CONFIG_DIR", str(config.ROOT / ".yolo"))
    # ultralytics keeps its settings and fonts in $YOLO_CONFIG_DIR/Ultralytics
    settings_dir = Path(os.environ["YOLO_CONFIG_DIR"]) / "Ultralytics"
    settings_dir.mkdir(parents=True, exist_ok=True)
    font = _dejavu_sans()
    if font is not None:
        for name in FONT_NAMES:
            target = settings_dir / name
            if not target.exists():
                shutil.copyfile(font, target)
    return settings_dir
