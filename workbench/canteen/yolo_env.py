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
# callable, and loading it calls that callable with arguments from the file (a poisoned checkpoint
# runs its code; even a class of an allowed package does: numpy.memmap(path, "w+") makes a file,
# ultralytics.YOLO("other.pt") loads another file unchecked, DetectionModel(cfg) builds what cfg names).
# So a .pt is checked in two steps before ultralytics sees it:
#  1. its pickles' GLOBAL / STACK_GLOBAL opcodes are read (pickletools: nothing is unpickled, nothing
#     imported): every (module, qualname) must be in the exact lists below, pinned from the shipped
#     checkpoints (models/kitchen/*.pt) and from yolo11n / -cls / -seg / -pose / -obb models built from
#     their yaml with ultralytics 8.4 (fp16 and fp32) and a training checkpoint's numpy metrics;
#  2. it is unpickled by torch's weights-only unpickler with exactly those globals, the model and
#     transform classes replaced by inert stand-ins: a class may only be made empty and filled with
#     state (NEWOBJ + BUILD, what torch.save writes for a module); a class called with arguments (REDUCE)
#     is refused, and so is a class or function left in the loaded data as a value. Nothing of
#     ultralytics, torchvision or numpy runs in the check.
# What passes both steps is what ultralytics' unpickling then does: empty modules filled with tensors.

# model and transform classes: made by NEWOBJ and filled by BUILD, never called
MODEL_CLASSES = frozenset({
    ("torch.nn.modules.activation", "SiLU"),
    ("torch.nn.modules.batchnorm", "BatchNorm2d"),
    ("torch.nn.modules.container", "ModuleList"),
    ("torch.nn.modules.container", "Sequential"),
    ("torch.nn.modules.conv", "Conv2d"),
    ("torch.nn.modules.conv", "ConvTranspose2d"),
    ("torch.nn.modules.dropout", "Dropout"),
    ("torch.nn.modules.linear", "Identity"),
    ("torch.nn.modules.linear", "Linear"),
    ("torch.nn.modules.pooling", "AdaptiveAvgPool2d"),
    ("torch.nn.modules.pooling", "MaxPool2d"),
    ("torch.nn.modules.upsampling", "Upsample"),
    ("torchvision.transforms.transforms", "CenterCrop"),
    ("torchvision.transforms.transforms", "Compose"),
    ("torchvision.transforms.transforms", "Normalize"),
    ("torchvision.transforms.transforms", "Resize"),
    ("torchvision.transforms.transforms", "ToTensor"),
    ("ultralytics.nn.modules.block", "Attention"),
    ("ultralytics.nn.modules.block", "Bottleneck"),
    ("ultralytics.nn.modules.block", "C2PSA"),
    ("ultralytics.nn.modules.block", "C3k"),
    ("ultralytics.nn.modules.block", "C3k2"),
    ("ultralytics.nn.modules.block", "DFL"),
    ("ultralytics.nn.modules.block", "PSABlock"),
    ("ultralytics.nn.modules.block", "Proto"),
    ("ultralytics.nn.modules.block", "SPPF"),
    ("ultralytics.nn.modules.conv", "Concat"),
    ("ultralytics.nn.modules.conv", "Conv"),
    ("ultralytics.nn.modules.conv", "DWConv"),
    ("ultralytics.nn.modules.head", "Classify"),
    ("ultralytics.nn.modules.head", "Detect"),
    ("ultralytics.nn.modules.head", "OBB"),
    ("ultralytics.nn.modules.head", "Pose"),
    ("ultralytics.nn.modules.head", "Segment"),
    ("ultralytics.nn.tasks", "ClassificationModel"),
    ("ultralytics.nn.tasks", "DetectionModel"),
    ("ultralytics.nn.tasks", "OBBModel"),
    ("ultralytics.nn.tasks", "PoseModel"),
    ("ultralytics.nn.tasks", "SegmentationModel"),
})
# tensors, containers, an enum and numpy numbers: called with arguments from the file, all harmless
# (they build values; none opens, maps or loads anything)
DATA_GLOBALS = frozenset({
    ("__builtin__", "set"), ("builtins", "set"), ("builtins", "frozenset"),
    ("collections", "OrderedDict"),
    ("torch", "Size"), ("torch", "FloatStorage"), ("torch", "HalfStorage"), ("torch", "LongStorage"),
    ("torch", "IntStorage"), ("torch", "BoolStorage"), ("torch", "DoubleStorage"), ("torch", "BFloat16Storage"),
    ("torch", "ByteStorage"),
    ("torch._utils", "_rebuild_tensor_v2"), ("torch._utils", "_rebuild_parameter"),
    ("torchvision.transforms.functional", "InterpolationMode"),
    ("_codecs", "encode"),
    ("numpy", "dtype"), ("numpy", "ndarray"),
    ("numpy._core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "scalar"),
    ("numpy.dtypes", "Float64DType"), ("numpy.dtypes", "Float32DType"), ("numpy.dtypes", "Int64DType"),
    ("numpy.dtypes", "Int32DType"), ("numpy.dtypes", "BoolDType"),
})
ALLOWED_GLOBALS = MODEL_CLASSES | DATA_GLOBALS
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

    if module == "__builtin__":
        module = "builtins"
    obj = importlib.import_module(module)
    for part in name.split("."):
        obj = getattr(obj, part)
    return obj


class _Called(Exception):
    """A model class called with arguments from the file (REDUCE), or made with arguments."""


class _Inert:
    """Stand-in for a model class while a checkpoint is checked: may be made empty (NEWOBJ) and
    filled with state (BUILD); calling it with the file's arguments refuses the file."""

    def __new__(cls, *args, **kwargs):
        if args or kwargs:
            raise _Called(cls.__qualname__)
        return object.__new__(cls)

    def __init__(self, *args, **kwargs):
        raise _Called(type(self).__qualname__)


def _stand_ins() -> list:
    """The weights-only unpickler's globals for the check: inert classes under the model and
    transform names, the real objects for the data globals (imported only from here)."""
    out = []
    for module, name in sorted(MODEL_CLASSES):
        out.append((type(name, (_Inert,), {"__module__": "workbench.canteen.yolo_env.inert"}), f"{module}.{name}"))
    for module, name in sorted(DATA_GLOBALS):
        try:
            out.append((_resolve(module, name), f"{module}.{name}"))
        except (ImportError, AttributeError):   # another numpy or torch: that name cannot appear anyway
            continue
    return out


def _callables_left(obj, limit: int = 200_000) -> list[str]:
    """Classes or functions held as values in loaded data (a checkpoint holds modules, tensors
    and plain values; a class kept as a value would be called later by whoever uses it)."""
    import types

    import torch

    seen, stack, found = set(), [obj], []
    while stack and len(seen) < limit:
        o = stack.pop()
        if id(o) in seen or isinstance(o, (str, bytes, int, float, bool, type(None), torch.Tensor)):
            continue
        seen.add(id(o))
        if isinstance(o, (type, types.FunctionType, types.BuiltinFunctionType, types.MethodType)):
            found.append(getattr(o, "__qualname__", repr(o)))
        elif isinstance(o, dict):
            stack.extend(o.keys())
            stack.extend(o.values())
        elif isinstance(o, (list, tuple, set, frozenset)):
            stack.extend(o)
        elif isinstance(o, _Inert):
            stack.extend(vars(o).values())
    return found


def checkpoint_problem(path: str | os.PathLike) -> str | None:
    """Why a .pt must not be loaded (in Chinese), or None when it holds only weights and the
    classes of a model: checked before ultralytics' torch.load(weights_only=False) runs it.
    Nothing in the file is run by the check (see ALLOWED_GLOBALS above)."""
    import pickle

    path = Path(path)
    try:
        names = pickle_globals(path)
    except Exception as exc:  # noqa: BLE001 - a file that is no zip and no pickle
        return f"不是有效的 YOLO 模型：文件无法解析（{type(exc).__name__}: {str(exc)[:200]}）"
    if ("?", "unreadable pickle") in names:
        return "不是有效的 YOLO 模型：文件无法解析（不是 torch.save 写的模型文件）"
    refused = sorted(f"{m}.{n}" for m, n in names if (m, n) not in ALLOWED_GLOBALS)
    if refused:
        return (f"模型文件含有可执行的引用（{', '.join(refused[:5])}），加载即会运行其中的代码，已拒绝；"
                f"只接受 ONNX，或只含权重与模型类的 .pt")
    ensure_yolo_env()
    import torch

    try:
        with torch.serialization.safe_globals(_stand_ins()):
            data = torch.load(path, map_location="cpu", weights_only=True)
    except _Called as exc:
        return (f"模型文件要求以文件中的参数构造 {exc.args[0]}（加载即会运行其中的代码），已拒绝；"
                f"只接受 ONNX，或只含权重与模型类的 .pt")
    except pickle.UnpicklingError as exc:
        return f"模型文件无法按“只读权重”方式加载，已拒绝：{str(exc).splitlines()[0][:300]}"
    except Exception as exc:  # noqa: BLE001 - whatever torch says, it is not a checkpoint to trust
        return f"模型文件无法按“只读权重”方式加载，已拒绝：{type(exc).__name__}: {str(exc)[:200]}"
    left = _callables_left(data)
    if left:
        return (f"模型文件把类或函数（{', '.join(sorted(set(left))[:5])}）当作数据保存，加载后会被调用，已拒绝；"
                f"只接受 ONNX，或只含权重与模型类的 .pt")
    return None


class CheckpointError(ValueError):
    """A .pt refused by :func:`checkpoint_problem` (the message says which file and why)."""


def checked_checkpoint(path: str | os.PathLike, what: str = "模型文件") -> Path:
    """`path` when :func:`checkpoint_problem` finds nothing (a .onnx or a yaml passes as it is);
    else CheckpointError with the reason in Chinese. For every place a .pt is handed to ultralytics
    (detector, training from a .pt, close-up --init, export, validation)."""
    path = Path(path)
    if path.suffix.lower() == ".pt" and path.is_file():
        problem = checkpoint_problem(path)
        if problem:
            raise CheckpointError(f"{what} {path.name}：{problem}")
    return path
