"""The kitchen detector's classes and how they map to 明厨亮灶 violations.

Fixed here so the synthetic dataset, the trained model, the rules and the dashboard agree.
Attribute classes (hat, mask, uniform) are boxes on a person's head, face or torso; an
attribute belongs to the person whose box holds the attribute box's centre.
"""
from __future__ import annotations

# Index = YOLO class id. Order must never change once a model is trained on it.
CLASSES: tuple[str, ...] = (
    "person",
    "chef_hat",      # head wearing a chef hat
    "no_chef_hat",   # bare head
    "mask",          # face with a mask
    "no_mask",       # face without a mask
    "uniform",       # torso in a white kitchen uniform
    "no_uniform",    # torso in ordinary clothes
    "shirtless",     # bare torso
    "phone",
    "cigarette",
    "rodent",
    "bin_open",
    "bin_closed",
)

LABELS_ZH: dict[str, str] = {
    "person": "人员", "chef_hat": "戴厨师帽", "no_chef_hat": "未戴厨师帽", "mask": "戴口罩",
    "no_mask": "未戴口罩", "uniform": "穿工作服", "no_uniform": "未穿工作服", "shirtless": "赤膊",
    "phone": "手机", "cigarette": "香烟", "rodent": "老鼠", "bin_open": "垃圾桶未盖",
    "bin_closed": "垃圾桶已盖",
}

# Violation classes (DOMAIN.md) -> severity. 陌生人闯入 comes from the rules (a person in a
# kitchen zone outside staff hours), not from one detector class.
VIOLATIONS: dict[str, str] = {
    "老鼠": "critical", "抽烟": "critical", "未戴厨师帽": "warning", "未戴口罩": "warning",
    "未穿工作服": "warning", "玩手机": "warning", "赤膊": "warning", "陌生人闯入": "warning",
    "垃圾桶未盖": "info",
}

# Detector class -> the violation it evidences (attributes are judged per tracked person).
CLASS_VIOLATION: dict[str, str] = {
    "rodent": "老鼠", "cigarette": "抽烟", "no_chef_hat": "未戴厨师帽", "no_mask": "未戴口罩",
    "no_uniform": "未穿工作服", "phone": "玩手机", "shirtless": "赤膊", "bin_open": "垃圾桶未盖",
}
