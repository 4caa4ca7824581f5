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


# ------------------------------------------------------------------ checkpoints that carry code

# Ultralytics loads a .pt with torch.load(weights_only=False): the pickle inside may name any
# callable, and loading it calls that callable (a poisoned checkpoint runs its code). So a .pt
# is checked first, without running anything: its pickle's globals must be classes or torch's
# tensor rebuilders from torch, torchvision, ultralytics, numpy or collections (what a YOLO checkpoint
# holds), and it must load with torch.load(weights_only=True) with just those classes allowed.
SAFE_MODULES = ("torch", "torchvision", "ultralytics", "numpy", "collections")
SAFE_BUILTINS = frozenset({"set", "frozenset", "dict", "list", "tuple", "slice", "range", "complex", "float",
                           "int", "bool", "str", "bytes", "bytearray"})
SAFE_FUNCTIONS = frozenset({("_codecs", "encode"), ("numpy.core.multiarray", "_reconstruct"),
                            ("numpy._core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "scalar"),
                            ("numpy._core.multiarray", "scalar"), ("torch", "device")})
_STRING_OPS = {"SHORT_BINUNICODE", "BINUNICODE", "UNICODE", "BINUNICODE8", "SHORT_BINSTRING", "BINSTRING", "STRING"}


def pickle_globals(path: str | os.PathLike) -> set[tuple[str, str]]:
    """The (module, name) pairs a checkpoint's pickles name, read by opcode (nothing runs): the
    data.pkl of a torch.save zip, or the pickles at the start of a legacy file."""
    import io
    import pickletools
    import zipfile

    path = Path(path)
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            pkls = [n for n in z.namelist() if n.endswith(".pkl")]
            blobs = [z.read(n) for n in pkls]
    else:
        blobs = [path.read_bytes()]
    found: set[tuple[str, str]] = set()
    for blob in blobs:
        stream = io.BytesIO(blob)
        for _ in range(5):    # a legacy file: magic number, protocol, system info, the object (then raw storage)
            start = stream.tell()
            if start >= len(blob):
                break
            strings, memo, last = [], {}, None
            try:
                for op, arg, _pos in pickletools.genops(stream):
                    name = op.name
                    if name in _STRING_OPS:
                        last = arg
                        strings.append(arg)
                    elif name == "MEMOIZE":
                        memo[len(memo)] = last
                    elif name in ("BINPUT", "LONG_BINPUT", "PUT"):
                        memo[arg] = last
                    elif name in ("BINGET", "LONG_BINGET", "GET"):
                        last = memo.get(arg)
                        strings.append(last)
                    elif name == "GLOBAL":
                        module, _, attr = str(arg).partition(" ")
                        found.add((module, attr))
                    elif name in ("STACK_GLOBAL", "INST", "OBJ"):
                        if name == "INST":
                            module, _, attr = str(arg).partition(" ")
                            found.add((module, attr))
                        elif len(strings) >= 2:
                            found.add((str(strings[-2]), str(strings[-1])))
                        else:
                            found.add(("?", "?"))
                    else:
                        last = None
            except Exception:  # noqa: BLE001 - past the pickles (raw storage bytes) or a broken one
                if stream.tell() == start or not found and start == 0:
                    found.add(("?", "unreadable pickle"))
                break
    return found


def _resolve(module: str, name: str):
    import importlib

    obj = importlib.import_module(module)
    for part in name.split("."):
        obj = getattr(obj, part)
    return obj


def checkpoint_problem(path: str | os.PathLike) -> str | None:
    """Why a .pt must not be loaded (in Chinese), or None when it holds only weights and the
    classes of a model: checked before ultralytics' torch.load(weights_only=False) runs it."""
    import pickle

    ensure_yolo_env()   # the classes named are imported below: ultralytics offline, inside the project
    path = Path(path)
    try:
        names = pickle_globals(path)
    except Exception as exc:  # noqa: BLE001 - a file that is no zip and no pickle
        return f"模型文件无法解析：{type(exc).__name__}: {str(exc)[:200]}"
    refused, allowed = [], []
    for module, name in sorted(names):
        top = module.split(".")[0]
        if module in ("builtins", "__builtin__") and name in SAFE_BUILTINS:
            continue
        if top not in SAFE_MODULES and (module, name) not in SAFE_FUNCTIONS:
            refused.append(f"{module}.{name}")
            continue
        try:
            obj = _resolve(module, name)
        except Exception:  # noqa: BLE001 - names nothing this installation has
            refused.append(f"{module}.{name}")
            continue
        rebuild = top == "torch" and (name.startswith("_rebuild") or name.endswith("Storage"))
        if isinstance(obj, type) or rebuild or (module, name) in SAFE_FUNCTIONS:
            allowed.append(obj)
        else:
            refused.append(f"{module}.{name}")
    if refused:
        return (f"模型文件含有可执行的引用（{', '.join(refused[:5])}），加载即会运行其中的代码，已拒绝；"
                f"只接受 ONNX，或只含权重与模型类的 .pt")
    import torch

    try:
        with torch.serialization.safe_globals(allowed):
            torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        return f"模型文件无法按“只读权重”方式加载，已拒绝：{str(exc).splitlines()[0][:300]}"
    except Exception as exc:  # noqa: BLE001 - whatever torch says, it is not a checkpoint to trust
        return f"模型文件无法按“只读权重”方式加载，已拒绝：{type(exc).__name__}: {str(exc)[:200]}"
    return None
