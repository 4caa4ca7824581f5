"""Synthetic kitchens: a labelled YOLO dataset and videos with a violation timeline.

There are no downloadable kitchen weights here, so the project renders its own data:
cartoon school-canteen kitchens seen from a ceiling camera, drawn with numpy + OpenCV
only (no torch, no ultralytics: this module runs on a bare GPU box with PYTHONPATH=.).

Two products, both deterministic for a seed:

* :func:`make_dataset` writes ``images/{train,val}``, ``labels/{train,val}`` and
  ``data.yaml`` (class names from :data:`workbench.canteen.classes.CLASSES`).
  Each image is drawn from ``numpy.random.default_rng([seed, split, index])``, so a
  set can be rendered in parallel (``workers``) and any image reproduced alone.
* :func:`make_video` renders a clip where people walk in and out, pause, take off a
  hat, smoke, use a phone..., with quiet periods, and writes the ground truth next to
  it: ``<clip>.truth.csv`` (violation, track_id, start_s, end_s) and
  ``<clip>.meta.json`` (wall-clock start, fps, size, who is present when).

Labels are tight: every labelled thing is also painted, with its own id, into an
"owner" map; boxes are the extent of the *visible* pixels after occlusion and after
the camera warp. A thing less than ``MIN_VISIBLE`` visible is not labelled.

Label conventions (what a real dataset brought by a user should follow too):
person = the whole visible body incl. hat and mask, without a held phone; chef_hat /
no_chef_hat = the head incl. the hat; mask / no_mask = the face (eyes to chin), only
when the face is seen (from behind: not judged, no box); uniform / no_uniform /
shirtless = the torso (shoulders to hips, without arms); phone and cigarette = the
object alone (no smoke); rodent = head and body, without the tail; bin_open /
bin_closed = the whole bin incl. its lid.
"""
from __future__ import annotations

import csv
import datetime as dt
import json
import math
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from workbench.canteen.classes import CLASSES

CID = {name: i for i, name in enumerate(CLASSES)}
MIN_VISIBLE = 0.35          # fraction of a thing's pixels that must stay visible to label it
MIN_BOX_PX = 3              # smaller boxes are not labelled
OCCLUDER_ID = 65535         # owner id of unlabelled things in front (the island counter)
SHANGHAI = dt.timezone(dt.timedelta(hours=8), "Asia/Shanghai")
STAFF_HOURS = ("05:30", "20:30")  # assumed kitchen shift used to plan stranger scenarios

# ----------------------------------------------------------------------------- palette
SKIN = [(189, 224, 255), (150, 195, 234), (120, 170, 220), (95, 140, 190), (70, 105, 150),
        (160, 200, 240), (110, 160, 205)]                       # BGR
HAIR = [(20, 20, 20), (30, 35, 45), (25, 45, 70), (40, 60, 90), (60, 60, 60), (120, 120, 125)]
SHIRT = [(40, 40, 200), (200, 80, 30), (30, 140, 30), (20, 20, 20), (90, 30, 120), (0, 140, 220),
         (120, 120, 120), (60, 60, 140), (150, 110, 40), (180, 60, 160), (30, 90, 160), (80, 160, 200)]
TROUSERS = [(30, 30, 30), (60, 50, 40), (90, 70, 50), (50, 50, 70), (200, 200, 200), (110, 100, 90)]
MASK_COL = [(235, 215, 170), (250, 250, 250), (30, 30, 30), (225, 225, 235), (200, 180, 120)]


def _jitter(rng, col, amount=18):
    return tuple(int(np.clip(c + rng.integers(-amount, amount + 1), 0, 255)) for c in col)


def _pick(rng, seq):
    return seq[int(rng.integers(len(seq)))]


# ----------------------------------------------------------------------------- painter
class Painter:
    """Draws on an image and, with the same strokes, on an owner-id map (uint16)."""

    def __init__(self, img: np.ndarray, owner: np.ndarray | None):
        self.img = img
        self.owner = owner

    def poly(self, pts, col, oid=0):
        pts = [np.round(np.asarray(pts, dtype=np.float64)).astype(np.int32)]
        cv2.fillPoly(self.img, pts, col, cv2.LINE_AA)
        if self.owner is not None and oid:
            cv2.fillPoly(self.owner, pts, int(oid))

    def ellipse(self, c, axes, angle, col, oid=0, start=0, end=360):
        c = (int(round(c[0])), int(round(c[1])))
        axes = (max(1, int(round(axes[0]))), max(1, int(round(axes[1]))))
        cv2.ellipse(self.img, c, axes, float(angle), start, end, col, -1, cv2.LINE_AA)
        if self.owner is not None and oid:
            cv2.ellipse(self.owner, c, axes, float(angle), start, end, int(oid), -1)

    def circle(self, c, r, col, oid=0):
        self.ellipse(c, (r, r), 0, col, oid)

    def line(self, p, q, col, width, oid=0):
        p = (int(round(p[0])), int(round(p[1])))
        q = (int(round(q[0])), int(round(q[1])))
        w = max(1, int(round(width)))
        cv2.line(self.img, p, q, col, w, cv2.LINE_AA)
        if self.owner is not None and oid:
            cv2.line(self.owner, p, q, int(oid), w)

    def rect(self, x0, y0, x1, y1, col, oid=0):
        self.poly([(x0, y0), (x1, y0), (x1, y1), (x0, y1)], col, oid)


@dataclass
class Thing:
    """A labelled thing: its class, the owner ids that make it, and its full pixel count."""
    cls: str
    ids: tuple[int, ...]
    full: int = 0
    bbox_hint: tuple[int, int, int, int] | None = None   # x0, y0, x1, y1 region to count in


class Ids:
    def __init__(self):
        self.n = 0

    def new(self) -> int:
        self.n += 1
        return self.n


def _count(owner, ids, hint):
    h, w = owner.shape
    x0, y0, x1, y1 = hint
    x0, y0 = max(0, int(x0)), max(0, int(y0))
    x1, y1 = min(w, int(x1) + 1), min(h, int(y1) + 1)
    if x1 <= x0 or y1 <= y0:
        return 0
    sub = owner[y0:y1, x0:x1]
    return int(np.count_nonzero(np.isin(sub, ids)))


# ----------------------------------------------------------------------------- background
@dataclass
class Layout:
    w: int
    h: int
    floor_y: int                 # where the back counter meets the floor
    counter_top: int             # top of the back counter surface
    horizon: float               # vanishing line used for sizes (may be above the image)
    tilt: float                  # 0 = side view, 1 = steep ceiling view
    counters: list = field(default_factory=list)    # (x0, x1, y_top) surfaces rodents may use
    island: tuple | None = None  # x0, y0, x1, y1 of a foreground counter (occluder)


def _tiles(rng, w, h, base, grout, size, jitter=10):
    img = np.empty((h, w, 3), np.uint8)
    img[:] = base
    ts = max(6, int(size))
    # per-tile shade
    ny, nx = h // ts + 2, w // ts + 2
    shade = rng.integers(-jitter, jitter + 1, size=(ny, nx, 1)).astype(np.int16)
    shade = np.repeat(np.repeat(shade, ts, 0), ts, 1)[:h, :w]
    img = np.clip(img.astype(np.int16) + shade, 0, 255).astype(np.uint8)
    g = max(1, ts // 14)
    img[::ts, :] = grout
    img[:, ::ts] = grout
    if g > 1:
        for k in range(1, g):
            img[k::ts, :] = grout
            img[:, k::ts] = grout
    return img


def _background(rng, w, h):
    """Wall, floor, back counter with stove, sink and shelves; returns image and layout."""
    tilt = float(rng.uniform(0.2, 1.0))
    floor_y = int(h * rng.uniform(0.22, 0.48) * (1.15 - 0.4 * tilt))
    floor_y = max(int(0.12 * h), min(floor_y, int(0.5 * h)))
    counter_h = int(h * rng.uniform(0.08, 0.16))
    counter_top = max(2, floor_y - counter_h)
    img = np.empty((h, w, 3), np.uint8)
    # wall
    wall_base = _jitter(rng, _pick(rng, [(225, 225, 225), (200, 215, 225), (180, 200, 200),
                                         (210, 230, 240), (160, 170, 175), (215, 200, 190)]), 15)
    wall = _tiles(rng, w, counter_top + 1, wall_base, _jitter(rng, (150, 150, 150), 30),
                  rng.uniform(0.025, 0.07) * w, 8)
    img[:counter_top + 1] = wall[:counter_top + 1]
    # floor: a tile texture warped into a trapezoid (the camera looks down and forward)
    fh = h - floor_y
    if fh > 2:
        tex_w, tex_h = w * 2, int(fh * 2)
        tex = _tiles(rng, tex_w, tex_h,
                     _jitter(rng, _pick(rng, [(120, 120, 130), (90, 100, 110), (150, 140, 130),
                                              (70, 80, 90), (170, 170, 160), (60, 60, 140)]), 20),
                     _jitter(rng, (60, 60, 60), 25), rng.uniform(0.04, 0.09) * tex_w, 14)
        spread = rng.uniform(0.15, 0.6) * w * (1.2 - 0.6 * tilt)
        src = np.float32([[0, 0], [tex_w, 0], [tex_w, tex_h], [0, tex_h]])
        dst = np.float32([[0, 0], [w, 0], [w + spread, fh], [-spread, fh]])
        m = cv2.getPerspectiveTransform(src, dst)
        img[floor_y:] = cv2.warpPerspective(tex, m, (w, fh), flags=cv2.INTER_LINEAR,
                                            borderMode=cv2.BORDER_REFLECT)
    p = Painter(img, None)
    # range hood and shelves on the wall
    for _ in range(int(rng.integers(0, 3))):
        sy = int(rng.uniform(0.1, 0.8) * counter_top)
        sx0 = int(rng.uniform(0, 0.7) * w)
        sx1 = sx0 + int(rng.uniform(0.15, 0.4) * w)
        p.rect(sx0, sy, sx1, sy + max(2, h // 120), _jitter(rng, (170, 170, 170), 30))
        x = sx0
        while x < sx1 - 8:
            bw = int(rng.uniform(0.02, 0.06) * w)
            bh = int(rng.uniform(0.02, 0.07) * h)
            col = _jitter(rng, _pick(rng, SHIRT + [(200, 200, 200)]), 40)
            if rng.random() < 0.5:
                p.rect(x, sy - bh, x + bw, sy, col)
            else:
                p.ellipse((x + bw / 2, sy - bh / 2), (bw / 2, bh / 2), 0, col)
            x += bw + int(rng.integers(2, 10))
    # back counter: stainless front, lighter top, stove section, sink
    steel = _jitter(rng, (185, 185, 180), 25)
    grad = np.linspace(1.08, 0.8, max(1, floor_y - counter_top))[:, None, None]
    img[counter_top:floor_y] = np.clip(np.array(steel, np.float32) * grad, 0, 255).astype(np.uint8)
    top_h = max(2, counter_h // 5)
    p.rect(0, counter_top, w, counter_top + top_h, _jitter(rng, (215, 215, 210), 20))
    # vertical panel seams
    for x in range(int(rng.integers(0, w // 6 + 1)), w, max(20, int(rng.uniform(0.1, 0.25) * w))):
        p.line((x, counter_top + top_h), (x, floor_y), _jitter(rng, (120, 120, 120), 20), 1)
    n_stove = int(rng.integers(0, 3))
    for _ in range(n_stove):
        sx = int(rng.uniform(0, 0.8) * w)
        sw = int(rng.uniform(0.12, 0.25) * w)
        p.rect(sx, counter_top, sx + sw, floor_y, _jitter(rng, (45, 45, 50), 10))
        hood_y = int(counter_top * rng.uniform(0.05, 0.4))
        p.poly([(sx - sw * 0.1, hood_y), (sx + sw * 1.1, hood_y), (sx + sw, hood_y + counter_top * 0.15),
                (sx, hood_y + counter_top * 0.15)], _jitter(rng, (175, 175, 175), 20))
        for k in range(2):
            bx = sx + sw * (0.27 + 0.46 * k)
            by = counter_top + top_h * 0.6
            p.ellipse((bx, by), (sw * 0.17, max(2, top_h * 0.45)), 0, (20, 20, 20))
            p.ellipse((bx, by), (sw * 0.12, max(1, top_h * 0.3)), 0, (40, 60, 180) if rng.random() < 0.3
                      else (70, 70, 70))
            if rng.random() < 0.6:   # a pot
                ph = counter_h * rng.uniform(0.5, 1.2)
                pw = sw * rng.uniform(0.15, 0.22)
                pc = _jitter(rng, _pick(rng, [(160, 160, 160), (40, 40, 40), (60, 80, 160)]), 20)
                p.rect(bx - pw, by - ph, bx + pw, by, pc)
                p.ellipse((bx, by - ph), (pw, max(2, pw * 0.3)), 0, _jitter(rng, pc, 30))
    if rng.random() < 0.6:   # sink
        sx = int(rng.uniform(0, 0.85) * w)
        sw = int(rng.uniform(0.08, 0.16) * w)
        p.rect(sx, counter_top + 1, sx + sw, counter_top + top_h, _jitter(rng, (140, 140, 140), 15))
        p.line((sx + sw / 2, counter_top - counter_h * 0.5), (sx + sw / 2, counter_top), (150, 150, 150),
               max(2, w // 200))
    # clutter on the counter top (negatives: boards, boxes, vegetables)
    for _ in range(int(rng.integers(0, 6))):
        cx = rng.uniform(0, w)
        size = rng.uniform(0.01, 0.04) * w
        col = _jitter(rng, _pick(rng, [(60, 140, 60), (40, 40, 180), (30, 160, 220), (200, 200, 200),
                                       (100, 150, 190), (40, 40, 40)]), 30)
        if rng.random() < 0.5:
            p.ellipse((cx, counter_top + top_h * 0.3), (size, size * 0.5), 0, col)
        else:
            p.rect(cx, counter_top - size * 0.4, cx + size * 2, counter_top + top_h * 0.5, col)
    horizon = counter_top - rng.uniform(0.2, 1.5) * h * (0.3 + tilt)
    lay = Layout(w, h, floor_y, counter_top, horizon, tilt)
    lay.counters.append((0, w, counter_top + top_h * 0.4))
    if rng.random() < 0.45:   # a foreground island counter occludes lower bodies
        iy0 = int(h * rng.uniform(0.68, 0.88))
        ix0 = int(rng.uniform(-0.2, 0.5) * w)
        ix1 = ix0 + int(rng.uniform(0.3, 0.8) * w)
        lay.island = (ix0, iy0, ix1, h)
    return img, lay


def _draw_island(p: Painter, rng, lay: Layout):
    x0, y0, x1, y1 = lay.island
    top = max(3, int((y1 - y0) * 0.25))
    p.rect(x0, y0, x1, y0 + top, _jitter(rng, (215, 215, 210), 15), OCCLUDER_ID)
    p.rect(x0, y0 + top, x1, y1, _jitter(rng, (170, 170, 168), 15), OCCLUDER_ID)
    for _ in range(int(rng.integers(0, 4))):
        cx = rng.uniform(x0, x1)
        s = rng.uniform(0.01, 0.03) * lay.w
        p.ellipse((cx, y0 + top * 0.4), (s * 1.5, s * 0.6), 0,
                  _jitter(rng, _pick(rng, [(60, 140, 60), (40, 40, 180), (230, 230, 230)]), 30), OCCLUDER_ID)


def _height_at(lay: Layout, foot_y: float) -> float:
    """Person height in pixels for feet at foot_y (perspective from the horizon)."""
    h = (foot_y - lay.horizon) * 0.55
    return float(np.clip(h, 0.12 * lay.h, 0.75 * lay.h))


# ----------------------------------------------------------------------------- people
@dataclass
class PersonSpec:
    x: float
    foot_y: float
    height: float
    facing: str = "front"            # front / back / side
    hat: str = "toque"               # toque / cap / bouffant / none / baseball
    mask: bool = True
    torso: str = "uniform"           # uniform / shirt / shirtless
    phone: str = ""                  # "" / chest / ear
    smoking: bool = False
    skin: tuple = (150, 195, 234)
    hair: tuple = (20, 20, 20)
    shirt: tuple = (40, 40, 200)
    pattern: str = "solid"           # solid / stripes / plaid / dots
    trousers: tuple = (30, 30, 30)
    mask_col: tuple = (235, 215, 170)
    arms: str = "down"               # down / work / up (phone, cigarette) / chest, mouth (the same without)
    lean: float = 0.0                # degrees
    side_dir: int = 1
    walk_phase: float = 0.0
    uniform_col: tuple = (245, 245, 245)


@dataclass(frozen=True)
class Odds:
    """How often a random person wears a mask, holds a phone, smokes (an unmasked, not
    back-turned person), and, with neither, raises the hands to the chest or the mouth
    anyway (`idle_hands`: the close-up classifier's hard negatives, a phone's or a
    cigarette's pose without the object). The defaults make the detector's dataset; the
    close-up classifier's crops ask for more of all. The default odds draw the same random
    numbers as before they existed (the committed model's training set is pinned by a test)."""
    mask: float = 0.55
    phone: float = 0.18
    smoking: float = 0.14
    idle_hands: float = 0.0


def random_person(rng, lay: Layout, x=None, foot_y=None, odds: Odds = Odds()) -> PersonSpec:
    if foot_y is None:
        foot_y = rng.uniform(lay.floor_y + 0.06 * lay.h, lay.h * 1.25)
    if x is None:
        x = rng.uniform(-0.05, 1.05) * lay.w
    height = _height_at(lay, foot_y) * rng.uniform(0.85, 1.1)
    facing = _pick(rng, ["front"] * 5 + ["side"] * 3 + ["back"] * 2)
    r = rng.random()
    hat = "none" if r < 0.38 else _pick(rng, ["toque", "toque", "cap", "bouffant"])
    if hat == "none" and rng.random() < 0.12:
        hat = "baseball"
    mask = rng.random() < odds.mask
    r = rng.random()
    torso = "uniform" if r < 0.5 else ("shirt" if r < 0.85 else "shirtless")
    phone = ""
    smoking = False
    r = rng.random()
    if r < odds.phone:
        phone = _pick(rng, ["chest", "chest", "ear"])
    elif r < odds.phone + odds.smoking and not mask and facing != "back":
        smoking = True
    arms = "up" if (phone or (smoking and rng.random() < 0.5)) else _pick(rng, ["down", "work", "work"])
    if odds.idle_hands and not phone and not smoking and rng.random() < odds.idle_hands:
        arms = _pick(rng, ["chest", "mouth"])
    return PersonSpec(
        x=float(x), foot_y=float(foot_y), height=float(height), facing=facing, hat=hat, mask=mask,
        torso=torso, phone=phone, smoking=smoking, skin=_jitter(rng, _pick(rng, SKIN), 12),
        hair=_jitter(rng, _pick(rng, HAIR), 8), shirt=_jitter(rng, _pick(rng, SHIRT), 25),
        pattern=_pick(rng, ["solid", "solid", "stripes", "plaid", "dots"]),
        trousers=_jitter(rng, _pick(rng, TROUSERS), 15), mask_col=_jitter(rng, _pick(rng, MASK_COL), 10),
        arms=arms, lean=float(rng.normal(0, 4)), side_dir=int(_pick(rng, [-1, 1])),
        walk_phase=float(rng.uniform(0, 2 * math.pi)),
        uniform_col=_jitter(rng, _pick(rng, [(245, 245, 245), (235, 240, 240), (250, 250, 245),
                                               (225, 230, 232)]), 6),
    )


def _rot(pt, c, ang):
    a = math.radians(ang)
    x, y = pt[0] - c[0], pt[1] - c[1]
    return (c[0] + x * math.cos(a) - y * math.sin(a), c[1] + x * math.sin(a) + y * math.cos(a))


def draw_person(p: Painter, rng, s: PersonSpec, ids: Ids | None, tilt: float = 0.5) -> list[Thing]:
    """Draw one person; returns the labelled things (person and its attributes, phone, cigarette)."""
    H = s.height
    fx, fy = s.x, s.foot_y
    c = (fx, fy)
    L = lambda pt: _rot(pt, c, s.lean)  # noqa: E731
    leg_f = 1.0 - 0.35 * tilt          # a steep camera foreshortens legs
    head_f = 1.0 + 0.25 * tilt
    hip_y = fy - 0.47 * H * leg_f
    sh_y = hip_y - 0.33 * H
    head_r = 0.065 * H * head_f
    head_c = (fx, sh_y - head_r * 1.05)
    sh_w = 0.14 * H
    hip_w = 0.11 * H
    new = ids.new if ids is not None else (lambda: 0)
    pid_body, pid_torso, pid_head, pid_face = new(), new(), new(), new()
    pid_hat = new()
    things: list[Thing] = []
    side = s.facing == "side"
    if side:
        sh_w *= 0.62
        hip_w *= 0.7
    # legs
    walk = math.sin(s.walk_phase)
    for k in (-1, 1):
        hx = fx + k * hip_w * 0.5
        foot = (fx + k * hip_w * 0.45 + walk * k * 0.05 * H, fy)
        p.line(L((hx, hip_y)), L(foot), s.trousers, 0.075 * H, pid_body)
        p.ellipse(L((foot[0] + (s.side_dir * 0.02 * H if side else 0), fy)), (0.035 * H, 0.015 * H), s.lean,
                  (20, 20, 20), pid_body)
    # torso colour / pattern
    if s.torso == "uniform":
        tcol = s.uniform_col
    elif s.torso == "shirtless":
        tcol = s.skin
    else:
        tcol = s.shirt
    torso_pts = [L((fx - sh_w, sh_y)), L((fx + sh_w, sh_y)), L((fx + hip_w, hip_y + 0.02 * H)),
                 L((fx - hip_w, hip_y + 0.02 * H))]
    p.poly(torso_pts, tcol, pid_torso)
    shade = tuple(int(v * 0.82) for v in tcol)
    if s.torso == "uniform":
        if s.facing != "back":
            # double-breasted buttons, collar
            for k in range(3):
                by = sh_y + (0.12 + 0.09 * k) * H
                for dx in (-0.04, 0.04):
                    if not side:
                        p.circle(L((fx + dx * H, by)), max(1, 0.008 * H), (90, 90, 90))
            p.poly([L((fx - sh_w * 0.45, sh_y)), L((fx + sh_w * 0.45, sh_y)), L((fx, sh_y + 0.05 * H))],
                   (215, 215, 215))
        if rng.random() < 0.4:  # apron
            acol = _pick(rng, [(240, 240, 240), (60, 60, 60), (230, 230, 230)])
            p.poly([L((fx - hip_w * 0.9, sh_y + 0.15 * H)), L((fx + hip_w * 0.9, sh_y + 0.15 * H)),
                    L((fx + hip_w * 1.05, hip_y + 0.1 * H)), L((fx - hip_w * 1.05, hip_y + 0.1 * H))],
                   acol, pid_torso)
        p.line(L((fx - sh_w * 0.9, sh_y + 0.02 * H)), L((fx - hip_w, hip_y)), shade, max(1, 0.01 * H))
    elif s.torso == "shirt":
        if s.pattern == "stripes":
            for k in range(1, 7):
                yy = sh_y + (hip_y - sh_y) * k / 7
                p.line(L((fx - sh_w, yy)), L((fx + sh_w, yy)), _jitter(rng, shade, 40), max(1, 0.012 * H))
        elif s.pattern == "plaid":
            col2 = _jitter(rng, _pick(rng, SHIRT), 30)
            for k in range(1, 5):
                yy = sh_y + (hip_y - sh_y) * k / 5
                p.line(L((fx - sh_w, yy)), L((fx + sh_w, yy)), col2, max(1, 0.012 * H))
                xx = fx - sh_w + 2 * sh_w * k / 5
                p.line(L((xx, sh_y)), L((xx, hip_y)), col2, max(1, 0.012 * H))
        elif s.pattern == "dots":
            for _ in range(8):
                p.circle(L((rng.uniform(fx - hip_w, fx + hip_w), rng.uniform(sh_y, hip_y))), max(1, 0.012 * H),
                         _jitter(rng, (230, 230, 230), 25))
        if s.facing != "back" and not side:
            p.poly([L((fx - sh_w * 0.35, sh_y)), L((fx + sh_w * 0.35, sh_y)), L((fx, sh_y + 0.045 * H))], s.skin)
    else:  # shirtless: skin with chest and navel marks
        if s.facing != "back":
            dk = tuple(int(v * 0.7) for v in s.skin)
            if not side:
                for dx in (-0.05, 0.05):
                    p.circle(L((fx + dx * H, sh_y + 0.09 * H)), max(1, 0.007 * H), dk)
                p.line(L((fx - 0.07 * H, sh_y + 0.12 * H)), L((fx - 0.02 * H, sh_y + 0.13 * H)), dk, 1)
                p.line(L((fx + 0.07 * H, sh_y + 0.12 * H)), L((fx + 0.02 * H, sh_y + 0.13 * H)), dk, 1)
            p.circle(L((fx, hip_y - 0.06 * H)), max(1, 0.006 * H), dk)
        p.rect(*L((fx - hip_w, hip_y - 0.01 * H)), *L((fx + hip_w, hip_y + 0.03 * H)), s.trousers, pid_body)
    # arms: sleeves (or bare arms) in the torso's colour
    sleeve = tcol
    long_sleeve = s.torso == "uniform" or rng.random() < 0.5
    aw = 0.045 * H
    arm_len = 0.3 * H
    mouth = (head_c[0] + (s.side_dir * head_r * 0.55 if side else head_r * 0.25), head_c[1] + head_r * 0.5)
    hands = []
    for k in (-1, 1):
        sh = (fx + k * sh_w * 0.92, sh_y + 0.02 * H)
        if side and k != s.side_dir:
            sh = (fx - s.side_dir * sh_w * 0.3, sh_y + 0.02 * H)
        if s.arms == "down":
            elbow = (sh[0] + k * 0.02 * H, sh[1] + arm_len * 0.5)
            hand = (sh[0] + k * 0.03 * H + math.sin(s.walk_phase) * 0.04 * H, sh[1] + arm_len)
        elif s.arms == "work":
            elbow = (sh[0] + k * 0.03 * H, sh[1] + arm_len * 0.48)
            hand = (fx + k * 0.05 * H + (s.side_dir * 0.12 * H if side else 0), sh[1] + arm_len * 0.62)
        else:  # up: the k == +1 arm (or side arm) raised to the face / chest
            if k == (s.side_dir if side else 1):
                elbow = (sh[0] + k * 0.06 * H, sh[1] + arm_len * 0.45)
                if s.phone == "ear":
                    hand = (head_c[0] + k * head_r * 1.05, head_c[1] + head_r * 0.2)
                elif s.phone == "chest" or s.arms == "chest":
                    hand = (fx + k * 0.03 * H, sh[1] + arm_len * 0.38)
                else:  # smoking (or arms "mouth"): hand near mouth
                    hand = (mouth[0] + k * head_r * 0.5, mouth[1] + head_r * 0.35)
            else:
                elbow = (sh[0] + k * 0.02 * H, sh[1] + arm_len * 0.5)
                if s.phone == "chest" or s.arms == "chest":
                    hand = (fx + k * 0.025 * H, sh[1] + arm_len * 0.42)
                else:
                    hand = (sh[0] + k * 0.02 * H, sh[1] + arm_len)
        hands.append(hand)
        upper_col = sleeve
        lower_col = sleeve if long_sleeve else s.skin
        p.line(L(sh), L(elbow), upper_col, aw, pid_body)
        p.line(L(elbow), L(hand), lower_col, aw * 0.85, pid_body)
        p.circle(L(hand), aw * 0.55, s.skin, pid_body)
    # neck + head
    p.line(L((fx, sh_y)), L((fx, head_c[1] + head_r * 0.8)), s.skin, head_r * 0.7, pid_body)
    p.ellipse(L(head_c), (head_r * 0.88, head_r), s.lean, s.skin, pid_head)
    face_visible = s.facing in ("front", "side")
    if s.facing == "back":
        p.ellipse(L((head_c[0], head_c[1] - head_r * 0.05)), (head_r * 0.9, head_r * 0.95), s.lean, s.hair, pid_head)
    else:
        # hair on top, face below
        p.ellipse(L(head_c), (head_r * 0.9, head_r * 1.0), s.lean, s.hair, pid_head, 180, 360)
        fc = (head_c[0] + (s.side_dir * head_r * 0.15 if side else 0), head_c[1] + head_r * 0.15)
        p.ellipse(L(fc), (head_r * (0.6 if side else 0.78), head_r * 0.82), s.lean, s.skin, pid_face)
        eye_y = head_c[1] + head_r * 0.05
        ecol = (30, 30, 30)
        er = max(1, head_r * 0.1)
        if side:
            p.circle(L((head_c[0] + s.side_dir * head_r * 0.45, eye_y)), er, ecol, pid_face)
            p.circle(L((head_c[0] + s.side_dir * head_r * 0.85, eye_y + head_r * 0.25)), head_r * 0.14,
                     s.skin, pid_face)   # nose
        else:
            for dx in (-0.33, 0.33):
                p.circle(L((head_c[0] + dx * head_r, eye_y)), er, ecol, pid_face)
                p.line(L((head_c[0] + (dx - 0.15) * head_r, eye_y - head_r * 0.2)),
                       L((head_c[0] + (dx + 0.15) * head_r, eye_y - head_r * 0.22)), s.hair,
                       max(1, head_r * 0.07), pid_face)
        if s.mask:
            mc = (fc[0], head_c[1] + head_r * 0.55)
            mw = head_r * (0.55 if side else 0.8)
            p.ellipse(L(mc), (mw, head_r * 0.42), s.lean, s.mask_col, pid_face)
            for dy in (-0.1, 0.1):
                p.line(L((mc[0] - mw * 0.8, mc[1] + dy * head_r)), L((mc[0] + mw * 0.8, mc[1] + dy * head_r)),
                       tuple(int(v * 0.85) for v in s.mask_col), 1)
            if not side:
                for k in (-1, 1):
                    p.line(L((mc[0] + k * mw, mc[1] - head_r * 0.1)), L((head_c[0] + k * head_r * 0.9, eye_y)),
                           (220, 220, 220), max(1, head_r * 0.05))
        else:
            mcol = tuple(int(v * 0.6) for v in s.skin)
            p.line(L((mouth[0] - head_r * 0.2, mouth[1])), L((mouth[0] + head_r * 0.2, mouth[1])), mcol,
                   max(1, head_r * 0.08), pid_face)
    # hat
    hat_top = head_c[1] - head_r
    if s.hat == "toque":
        hh = head_r * rng.uniform(1.2, 2.0)
        hw = head_r * 0.95
        p.rect(*L((head_c[0] - hw, hat_top - hh * 0.6)), *L((head_c[0] + hw, hat_top + head_r * 0.35)),
               (248, 248, 248), pid_hat)
        for dx in (-0.55, 0.0, 0.55):
            p.circle(L((head_c[0] + dx * hw, hat_top - hh * 0.7)), hw * 0.55, (250, 250, 250), pid_hat)
        p.line(L((head_c[0] - hw, hat_top + head_r * 0.3)), L((head_c[0] + hw, hat_top + head_r * 0.3)),
               (215, 215, 215), max(1, head_r * 0.12))
    elif s.hat == "cap":
        p.ellipse(L((head_c[0], hat_top + head_r * 0.45)), (head_r * 0.97, head_r * 0.72), s.lean,
                  (245, 245, 245), pid_hat, 180, 360)
        p.rect(*L((head_c[0] - head_r * 0.97, hat_top + head_r * 0.3)),
               *L((head_c[0] + head_r * 0.97, hat_top + head_r * 0.55)), (235, 235, 235), pid_hat)
    elif s.hat == "bouffant":
        col = _pick(rng, [(245, 245, 245), (230, 200, 150), (240, 230, 220)])
        p.ellipse(L((head_c[0], hat_top + head_r * 0.4)), (head_r * 1.12, head_r * 0.85), s.lean, col, pid_hat,
                  170, 370)
        for k in range(5):
            a = math.pi * (0.15 + 0.7 * k / 4)
            p.line(L((head_c[0] - head_r * math.cos(a) * 0.9, hat_top + head_r * 0.4 - head_r * 0.75 * math.sin(a))),
                   L((head_c[0] - head_r * math.cos(a) * 0.5, hat_top + head_r * 0.35)),
                   tuple(int(v * 0.85) for v in col), 1)
    elif s.hat == "baseball":
        col = _jitter(rng, _pick(rng, [(40, 40, 40), (150, 60, 20), (30, 30, 160)]), 20)
        p.ellipse(L((head_c[0], hat_top + head_r * 0.5)), (head_r * 0.95, head_r * 0.7), s.lean, col, pid_hat,
                  180, 360)
        p.ellipse(L((head_c[0] + (s.side_dir * head_r * 0.8 if side else 0), hat_top + head_r * 0.52)),
                  (head_r * (0.8 if side else 0.7), head_r * 0.18), s.lean, col, pid_hat)
    # phone and cigarette
    if s.phone:
        hand = hands[1] if not side else hands[0 if s.side_dir < 0 else 1]
        if s.phone == "chest":
            hand = ((hands[0][0] + hands[1][0]) / 2, (hands[0][1] + hands[1][1]) / 2) if not side else hand
        pw, ph = 0.028 * H, 0.05 * H
        ang = s.lean + float(rng.normal(0, 15)) + (20 if s.phone == "ear" else 0)
        pc = (hand[0], hand[1] - ph * 0.15)
        oid = new()
        corners = [_rot((pc[0] + dx * pw, pc[1] + dy * ph), pc, ang) for dx, dy in
                   ((-0.5, -0.5), (0.5, -0.5), (0.5, 0.5), (-0.5, 0.5))]
        p.poly([L(q) for q in corners], _pick(rng, [(20, 20, 20), (40, 40, 40), (200, 200, 200), (90, 60, 40)]), oid)
        if s.phone == "chest" and s.facing != "back":
            inner = [_rot((pc[0] + dx * pw * 0.8, pc[1] + dy * ph * 0.85), pc, ang) for dx, dy in
                     ((-0.5, -0.5), (0.5, -0.5), (0.5, 0.5), (-0.5, 0.5))]
            p.poly([L(q) for q in inner], _jitter(rng, _pick(rng, [(250, 220, 160), (240, 240, 240),
                                                                   (200, 160, 90)]), 15), oid)
        # fingers over the phone
        p.circle(L((hand[0], hand[1] + ph * 0.3)), aw * 0.4, s.skin, pid_body)
        things.append(Thing("phone", (oid,)))
    if s.smoking and face_visible and not s.mask:
        oid = new()
        clen = max(7.0, 0.035 * H)
        cw = max(2.0, 0.008 * H)
        ang = (s.side_dir if side else _pick(rng, [-1, 1])) * rng.uniform(10, 40)
        d = (math.cos(math.radians(ang)) * (1 if ang >= 0 else -1), math.sin(math.radians(abs(ang))))
        a = mouth
        b = (mouth[0] + d[0] * clen, mouth[1] + d[1] * clen)
        p.line(L(a), L(b), (235, 240, 245), cw, oid)
        tip = (a[0] + d[0] * clen * 0.85, a[1] + d[1] * clen * 0.85)
        p.line(L(tip), L(b), (40, 110, 240), cw, oid)
        p.circle(L(b), max(1, cw * 0.45), (60, 180, 255), oid)
        # smoke wisp (not part of the box)
        q = b
        for k in range(6):
            nq = (q[0] + rng.normal(0, 0.01 * H), q[1] - 0.015 * H)
            p.line(L(q), L(nq), (200, 200, 200), 1)
            q = nq
        things.append(Thing("cigarette", (oid,)))
    person_ids = (pid_body, pid_torso, pid_head, pid_face, pid_hat)
    things.append(Thing("person", person_ids))
    things.append(Thing("no_chef_hat" if s.hat in ("none", "baseball") else "chef_hat", (pid_head, pid_face, pid_hat)))
    if face_visible:
        things.append(Thing("mask" if s.mask else "no_mask", (pid_face,)))
    things.append(Thing({"uniform": "uniform", "shirt": "no_uniform", "shirtless": "shirtless"}[s.torso],
                        (pid_torso,)))
    return things


# ----------------------------------------------------------------------------- rodents, bins
def draw_rodent(p: Painter, rng, x, y, size, direction, ids: Ids | None, phase=0.0) -> list[Thing]:
    oid = ids.new() if ids is not None else 0
    col = _jitter(rng, _pick(rng, [(60, 65, 70), (50, 70, 95), (90, 95, 100), (40, 45, 50)]), 10)
    bl, bh = size, size * 0.45
    body = (x, y - bh * 0.5)
    # tail first (not labelled)
    q = (x - direction * bl * 0.9, body[1] + bh * 0.2)
    p.line((x - direction * bl * 0.45, body[1] + bh * 0.1), q, tuple(int(v * 1.3) % 256 for v in col),
           max(1, size * 0.06))
    q2 = (q[0] - direction * bl * 0.5, q[1] + math.sin(phase) * bh * 0.8)
    p.line(q, q2, tuple(min(255, int(v * 1.4)) for v in col), max(1, size * 0.04))
    p.ellipse(body, (bl * 0.5, bh * 0.5), float(rng.normal(0, 5)), col, oid)
    hc = (x + direction * bl * 0.55, body[1] + bh * 0.05)
    p.ellipse(hc, (bl * 0.22, bh * 0.32), direction * 10, col, oid)
    p.circle((hc[0] - direction * bl * 0.05, hc[1] - bh * 0.35), max(1, bh * 0.18), (140, 140, 200), oid)
    p.circle((hc[0] + direction * bl * 0.08, hc[1] - bh * 0.05), max(1, bh * 0.07), (10, 10, 10), oid)
    for k in (-1, 1):   # feet
        p.line((x + k * bl * 0.25, body[1] + bh * 0.3), (x + k * bl * 0.25 + math.sin(phase + k) * bh * 0.2, y),
               col, max(1, size * 0.05), oid)
    return [Thing("rodent", (oid,))]


def draw_bin(p: Painter, rng, x, foot_y, height, is_open, ids: Ids | None, col=None) -> list[Thing]:
    oid = ids.new() if ids is not None else 0
    col = col or _jitter(rng, _pick(rng, [(60, 120, 40), (150, 100, 30), (90, 90, 90), (40, 40, 40),
                                          (40, 130, 200), (200, 200, 200)]), 15)
    w = height * 0.38
    top = foot_y - height
    dark = tuple(int(v * 0.7) for v in col)
    p.poly([(x - w, top), (x + w, top), (x + w * 0.85, foot_y), (x - w * 0.85, foot_y)], col, oid)
    p.line((x - w * 0.9, top + height * 0.25), (x + w * 0.9, top + height * 0.25), dark, max(1, height * 0.02))
    if is_open:
        p.ellipse((x, top), (w, w * 0.3), 0, (25, 25, 25), oid)
        for _ in range(4):   # trash sticking out
            tc = _jitter(rng, _pick(rng, [(200, 200, 200), (60, 160, 60), (30, 120, 220), (180, 180, 230)]), 30)
            p.ellipse((x + rng.uniform(-0.6, 0.6) * w, top - rng.uniform(0, 0.15) * height),
                      (w * rng.uniform(0.15, 0.35), w * rng.uniform(0.1, 0.2)), rng.uniform(0, 180), tc, oid)
        # lid hanging open behind
        p.poly([(x - w, top), (x + w, top), (x + w * 0.95, top - height * 0.45), (x - w * 0.95, top - height * 0.45)],
               tuple(int(v * 0.9) for v in col), oid)
        p.ellipse((x, top), (w, w * 0.3), 0, (25, 25, 25), oid, 0, 180)
    else:
        p.ellipse((x, top), (w * 1.05, w * 0.32), 0, tuple(min(255, int(v * 1.15)) for v in col), oid)
        p.rect(x - w * 0.25, top - w * 0.18, x + w * 0.25, top - w * 0.02, dark, oid)
    return [Thing("bin_open" if is_open else "bin_closed", (oid,))]


# ----------------------------------------------------------------------------- camera effects
def _lighting(rng, img: np.ndarray, strength: float = 1.0) -> np.ndarray:
    h, w = img.shape[:2]
    f = img.astype(np.float32)
    gain = rng.uniform(0.45, 1.3) if rng.random() < 0.85 else rng.uniform(0.25, 0.45)
    cast = np.array([rng.uniform(0.85, 1.15), rng.uniform(0.92, 1.08), rng.uniform(0.85, 1.15)], np.float32)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    cx, cy = rng.uniform(0, w), rng.uniform(-0.3 * h, h)
    dist = np.sqrt((xx - cx) ** 2 + (yy - cy) ** 2) / max(w, h)
    spot = 1.0 + rng.uniform(0.0, 0.5) * np.exp(-dist ** 2 / rng.uniform(0.05, 0.4))
    vign = 1.0 - rng.uniform(0, 0.45) * (((xx - w / 2) / w) ** 2 + ((yy - h / 2) / h) ** 2) * 2
    f *= (gain * spot * vign)[..., None] * cast
    if rng.random() < 0.12:   # night / IR mode: grey
        g = f.mean(axis=2, keepdims=True)
        f = np.repeat(g, 3, axis=2)
    f += rng.normal(0, rng.uniform(1, 9) * strength, size=f.shape).astype(np.float32)
    out = np.clip(f, 0, 255).astype(np.uint8)
    r = rng.random()
    if r < 0.25:
        k = int(rng.integers(1, 3)) * 2 + 1
        out = cv2.GaussianBlur(out, (k, k), 0)
    elif r < 0.35:   # motion blur
        k = int(rng.integers(3, 8))
        kern = np.zeros((k, k), np.float32)
        kern[k // 2] = 1.0 / k
        m = cv2.getRotationMatrix2D((k / 2 - 0.5, k / 2 - 0.5), float(rng.uniform(0, 180)), 1.0)
        kern = cv2.warpAffine(kern, m, (k, k))
        kern /= max(kern.sum(), 1e-6)
        out = cv2.filter2D(out, -1, kern)
    return out


def _camera_warp(rng, w, h):
    """A random homography: camera roll, keystone and zoom (maps an inner quad to the frame)."""
    ang = math.radians(rng.uniform(-7, 7))
    scale = rng.uniform(0.78, 0.9)
    cx, cy = w / 2 + rng.uniform(-0.04, 0.04) * w, h / 2 + rng.uniform(-0.04, 0.04) * h
    pts = []
    for (x, y) in ((0, 0), (w, 0), (w, h), (0, h)):
        dx, dy = (x - w / 2) * scale, (y - h / 2) * scale
        rx = dx * math.cos(ang) - dy * math.sin(ang)
        ry = dx * math.sin(ang) + dy * math.cos(ang)
        pts.append((cx + rx + rng.uniform(-0.03, 0.03) * w, cy + ry + rng.uniform(-0.03, 0.03) * h))
    src = np.float32(pts)
    src[:, 0] = np.clip(src[:, 0], 0, w - 1)
    src[:, 1] = np.clip(src[:, 1], 0, h - 1)
    dst = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    return cv2.getPerspectiveTransform(src, dst)


# ----------------------------------------------------------------------------- one labelled image
LETTERBOX_SHARE = 0.35      # share of images rendered as a 16:9 camera frame letterboxed into the square


Label = tuple[int, float, float, float, float]   # class id, cx, cy, w, h (normalised)


def render_image(rng: np.random.Generator, imgsz: int = 640) -> tuple[np.ndarray, list[Label]]:
    """Render one labelled kitchen image; returns (BGR image, [(class_id, cx, cy, w, h) normalised]).

    About LETTERBOX_SHARE of the images are a 16:9 camera frame padded to the square with
    grey (114), exactly as the detector letterboxes a 640x360 frame at inference.
    """
    if rng.random() < LETTERBOX_SHARE:
        fh = int(round(imgsz * 9 / 16))
        frame, labels = _render(rng, int(imgsz), fh)
        top = (int(imgsz) - fh) // 2
        img = np.full((int(imgsz), int(imgsz), 3), 114, np.uint8)
        img[top:top + fh] = frame
        k = fh / imgsz
        labels = [(c, x, top / imgsz + y * k, bw, bh * k) for c, x, y, bw, bh in labels]
        return img, labels
    return _render(rng, int(imgsz), int(imgsz))


def _render(rng: np.random.Generator, w: int, h: int, odds: Odds = Odds()):
    img, lay = _background(rng, w, h)
    owner = np.zeros((h, w), np.uint16)
    p = Painter(img, owner)
    ids = Ids()
    things: list[Thing] = []
    # rodents on the back counter top
    for _ in range(int(rng.random() < 0.18)):
        x = rng.uniform(0.05, 0.95) * w
        size = _height_at(lay, lay.counter_top + 0.1 * h) * rng.uniform(0.1, 0.16)
        ts = draw_rodent(p, rng, x, lay.counters[0][2] + size * 0.1, size, _pick(rng, [-1, 1]), ids,
                         rng.uniform(0, 6))
        _finish(owner, ts, x - size * 2, lay.counters[0][2] - size, x + size * 2, lay.counters[0][2] + size)
        things += ts
    # floor objects, drawn far to near
    objs = []
    n_people = int(rng.choice([0, 1, 1, 2, 2, 3, 3, 4, 5, 6], p=[.05, .12, .12, .14, .14, .12, .11, .1, .06, .04]))
    for _ in range(n_people):
        objs.append(("person", rng.uniform(lay.floor_y + 0.05 * h, h * 1.25)))
    for _ in range(int(rng.choice([0, 1, 2], p=[0.55, 0.35, 0.1]))):
        objs.append(("rodent", rng.uniform(lay.floor_y + 0.02 * h, h * 0.98)))
    for _ in range(int(rng.choice([0, 1, 2], p=[0.45, 0.4, 0.15]))):
        objs.append(("bin", rng.uniform(lay.floor_y + 0.03 * h, h * 1.02)))
    if lay.island is not None:
        objs.append(("island", float(lay.island[1]) + 1e-3))
    objs.sort(key=lambda o: o[1])
    for kind, y in objs:
        if kind == "island":
            _draw_island(p, rng, lay)
            continue
        if kind == "person":
            spec = random_person(rng, lay, foot_y=y, odds=odds)
            ts = draw_person(p, rng, spec, ids, lay.tilt)
            H = spec.height
            hint = (spec.x - 0.7 * H, spec.foot_y - 1.4 * H, spec.x + 0.7 * H, spec.foot_y + 0.05 * H)
        elif kind == "rodent":
            x = rng.uniform(0.02, 0.98) * w
            size = _height_at(lay, y) * rng.uniform(0.09, 0.16)
            ts = draw_rodent(p, rng, x, y, size, _pick(rng, [-1, 1]), ids, rng.uniform(0, 6))
            hint = (x - size * 1.5, y - size * 1.5, x + size * 1.5, y + size * 0.2)
        else:
            x = rng.uniform(0.03, 0.97) * w
            bh = _height_at(lay, y) * rng.uniform(0.28, 0.45)
            ts = draw_bin(p, rng, x, y, bh, bool(rng.random() < 0.5), ids)
            hint = (x - bh, y - bh * 1.6, x + bh, y + 2)
        _finish(owner, ts, *hint)
        things += ts
    # visibility before the camera warp
    keep = []
    for t in things:
        if t.full <= 0:
            continue
        vis = _count(owner, t.ids, t.bbox_hint)
        if vis / t.full >= MIN_VISIBLE:
            keep.append(t)
    img = _lighting(rng, img)
    m = _camera_warp(rng, w, h)
    img = cv2.warpPerspective(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    owner = cv2.warpPerspective(owner, m, (w, h), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT,
                                borderValue=0)
    labels = []
    for t in keep:
        box = _bbox(owner, t.ids)
        if box is None:
            continue
        x0, y0, x1, y1 = box
        bw, bh = x1 - x0 + 1, y1 - y0 + 1
        if bw < MIN_BOX_PX or bh < MIN_BOX_PX:
            continue
        labels.append((CID[t.cls], (x0 + bw / 2) / w, (y0 + bh / 2) / h, bw / w, bh / h))
    return img, labels


def _finish(owner, things, x0, y0, x1, y1):
    for t in things:
        t.bbox_hint = (x0, y0, x1, y1)
        t.full = _count(owner, t.ids, t.bbox_hint)


def _bbox(owner, ids):
    m = np.isin(owner, ids)
    rows = np.flatnonzero(m.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(m[rows[0]:rows[-1] + 1].any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]), int(rows[-1])


# ----------------------------------------------------------------------------- dataset
_SPLIT_STREAM = {"train": 0, "val": 1}


def _render_to_files(args):
    out_dir, split, index, seed, imgsz = args
    rng = np.random.default_rng([int(seed), _SPLIT_STREAM[split], int(index)])
    img, labels = render_image(rng, imgsz)
    name = f"kitchen_{split}_{index:06d}"
    cv2.imwrite(str(Path(out_dir) / "images" / split / f"{name}.jpg"), img,
                [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(70, 96))])
    with open(Path(out_dir) / "labels" / split / f"{name}.txt", "w") as fh:
        for c, x, y, bw, bh in labels:
            fh.write(f"{c} {x:.6f} {y:.6f} {bw:.6f} {bh:.6f}\n")
    return len(labels)


def write_data_yaml(out_dir: Path, names=CLASSES) -> Path:
    """data.yaml for ultralytics (relative paths under `path`)."""
    out_dir = Path(out_dir).resolve()
    lines = [f"path: {out_dir}", "train: images/train", "val: images/val", f"nc: {len(names)}", "names:"]
    lines += [f"  {i}: {n}" for i, n in enumerate(names)]
    path = out_dir / "data.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def make_dataset(out_dir, n_train: int = 2000, n_val: int = 200, imgsz: int = 640, seed: int = 0,
                 progress: Callable[[int], object] | None = None, workers: int = 1) -> Path:
    """Render a YOLO-format synthetic kitchen dataset; returns the data.yaml path.

    Deterministic for a seed (also across `workers`). `progress(n)` is called with the
    number of images just written (e.g. a tqdm bar's `update`).
    """
    out_dir = Path(out_dir)
    for split in ("train", "val"):
        (out_dir / "images" / split).mkdir(parents=True, exist_ok=True)
        (out_dir / "labels" / split).mkdir(parents=True, exist_ok=True)
    jobs = [(str(out_dir), "train", i, seed, imgsz) for i in range(int(n_train))]
    jobs += [(str(out_dir), "val", i, seed, imgsz) for i in range(int(n_val))]
    step = progress or (lambda _n: None)
    if workers and workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(max_workers=int(workers)) as pool:
            for _ in pool.map(_render_to_files, jobs, chunksize=16):
                step(1)
    else:
        for job in jobs:
            _render_to_files(job)
            step(1)
    return write_data_yaml(out_dir)


# ----------------------------------------------------------------------------- videos
@dataclass
class Actor:
    """Someone (or something) in a clip. Times in seconds from the clip start."""
    track_id: int
    kind: str = "person"                  # person / rodent / bin
    enter_s: float = 0.0
    leave_s: float = 60.0
    role: str = "staff"                   # staff / stranger (persons)
    spec: dict = field(default_factory=dict)          # PersonSpec fields that stay fixed
    violations: dict = field(default_factory=dict)    # violation (Chinese) -> [(start_s, end_s)]
    path: list = field(default_factory=list)          # [(t, x_frac, y_frac)] waypoints


@dataclass
class Timeline:
    """The ground truth of a synthetic clip."""
    path: Path
    fps: float
    seconds: float
    size: tuple[int, int]
    clock_start: dt.datetime                          # wall-clock time of frame 0 (Asia/Shanghai)
    rows: list[tuple[str, int, float, float]]         # (violation, track_id, start_s, end_s)
    presence: list[tuple[int, str, float, float]]     # (track_id, kind, enter_s, leave_s)
    truth_path: Path | None = None
    meta_path: Path | None = None


# what a person violation does to the person's look
_VIOLATION_LOOK = {"未戴厨师帽": ("hat", "none"), "未戴口罩": ("mask", False), "未穿工作服": ("torso", "shirt"),
                   "赤膊": ("torso", "shirtless"), "玩手机": ("phone", "chest"), "抽烟": ("smoking", True)}


def _random_scenario(rng, seconds: float) -> dict:
    """A plausible minute in a kitchen: 1-4 staff, some violations, quiet gaps, maybe a rat."""
    actors = []
    n = int(rng.integers(1, 5))
    tid = 1
    quiet_start = rng.uniform(0.25, 0.6) * seconds
    quiet_len = rng.uniform(0.1, 0.2) * seconds
    for _ in range(n):
        enter = float(rng.uniform(0, 0.3) * seconds) if rng.random() < 0.6 else 0.0
        leave = float(min(seconds, enter + rng.uniform(0.4, 1.0) * seconds))
        # leave the room during the quiet period
        if enter < quiet_start + quiet_len and leave > quiet_start:
            leave = min(leave, quiet_start)
            if leave - enter < 6:
                enter = quiet_start + quiet_len + float(rng.uniform(0, 6))
                leave = min(seconds, enter + rng.uniform(10, 30))
        if leave - enter < 5:
            continue
        viol = {}
        kinds = list(_VIOLATION_LOOK)
        for v in rng.choice(kinds, size=int(rng.integers(0, 3)), replace=False):
            v = str(v)
            if v in ("未穿工作服", "赤膊") and ("未穿工作服" in viol or "赤膊" in viol):
                continue
            if v == "抽烟" and ("未戴口罩" not in viol):
                viol.setdefault("未戴口罩", [])
            if v in ("未穿工作服", "赤膊") and rng.random() < 0.5:
                iv = (enter, leave)                           # came in like that
            else:
                a = float(rng.uniform(enter + 1, max(enter + 1.5, leave - 5)))
                iv = (a, float(min(leave, a + rng.uniform(4, 15))))
            viol.setdefault(v, []).append(iv)
        if "抽烟" in viol:   # smoking needs the mask off for at least as long
            s0, s1 = viol["抽烟"][0]
            viol["未戴口罩"] = [(s0, s1)] if not viol["未戴口罩"] else viol["未戴口罩"]
            m0, m1 = viol["未戴口罩"][0]
            viol["未戴口罩"] = [(min(m0, s0), max(m1, s1))]
        actors.append({"track_id": tid, "kind": "person", "enter_s": enter, "leave_s": leave,
                       "violations": viol})
        tid += 1
    if rng.random() < 0.4:
        a = float(rng.uniform(0, max(0.5, seconds - 6)))
        actors.append({"track_id": 101, "kind": "rodent", "enter_s": a, "leave_s": a + float(rng.uniform(2.5, 5)),
                       "violations": {"老鼠": [(0, 0)]}})
    if rng.random() < 0.6:
        a = float(rng.uniform(0, seconds * 0.7))
        opened = {"垃圾桶未盖": [(a, float(min(seconds, a + rng.uniform(8, 25))))]} if rng.random() < 0.7 else {}
        actors.append({"track_id": 201, "kind": "bin", "enter_s": 0.0, "leave_s": seconds, "violations": opened})
    return {"clock_start": "2026-11-26T10:00:00+08:00", "actors": actors}


PRESETS = {
    # nobody at all: the motion gate should keep the detector idle, no events
    "quiet": lambda s: {"clock_start": "2026-11-26T14:00:00+08:00", "actors": []},
    # a compliant shift: two staff, correctly dressed, no violation
    "compliant": lambda s: {"clock_start": "2026-11-26T10:30:00+08:00", "actors": [
        {"track_id": 1, "kind": "person", "enter_s": 0.0, "leave_s": s, "violations": {}},
        {"track_id": 2, "kind": "person", "enter_s": 0.2 * s, "leave_s": 0.8 * s, "violations": {}}]},
    # a stranger walks into the kitchen at night (outside STAFF_HOURS), without uniform or hat
    "night_stranger": lambda s: {"clock_start": "2026-11-26T23:20:00+08:00", "actors": [
        {"track_id": 1, "kind": "person", "role": "stranger", "enter_s": 0.15 * s, "leave_s": 0.6 * s,
         "spec": {"hat": "none", "mask": False, "torso": "shirt"},
         "violations": {"未戴厨师帽": [(0.15 * s, 0.6 * s)], "未戴口罩": [(0.15 * s, 0.6 * s)],
                        "未穿工作服": [(0.15 * s, 0.6 * s)]}}]},
}


def _interp_path(path, t):
    ts = [q[0] for q in path]
    xs = [q[1] for q in path]
    ys = [q[2] for q in path]
    return float(np.interp(t, ts, xs)), float(np.interp(t, ts, ys))


def _build_actors(rng, scen: dict, seconds: float) -> list[Actor]:
    actors = []
    for a in scen.get("actors", []):
        act = Actor(track_id=int(a["track_id"]), kind=a.get("kind", "person"), enter_s=float(a.get("enter_s", 0)),
                    leave_s=float(min(seconds, a.get("leave_s", seconds))), role=a.get("role", "staff"),
                    spec=dict(a.get("spec", {})),
                    violations={k: [tuple(map(float, iv)) for iv in v] for k, v in a.get("violations", {}).items()},
                    path=[tuple(q) for q in a.get("path", [])])
        if not act.path:
            if act.kind == "person":
                # enter from a side (or the bottom edge), wander between working spots, pause, leave
                side = _pick(rng, [-0.12, 1.12])
                pts = [(act.enter_s, side, rng.uniform(0.55, 0.95))]
                t = act.enter_s + rng.uniform(2, 4)
                while t < act.leave_s - 3:
                    spot = (rng.uniform(0.12, 0.88), rng.uniform(0.5, 0.98))
                    pts.append((t, *spot))
                    t += rng.uniform(3, 9)                  # walk
                    pts.append((min(t, act.leave_s - 3), *spot))
                    t += rng.uniform(2, 7)                  # stand and work
                pts.append((act.leave_s, _pick(rng, [-0.12, 1.12]), rng.uniform(0.55, 0.95)))
                act.path = pts
            elif act.kind == "rodent":
                d = _pick(rng, [-1, 1])
                y = rng.uniform(0.62, 0.97)
                act.path = [(act.enter_s, 0.5 - d * 0.62, y),
                            (act.leave_s, 0.5 + d * 0.62, y + rng.uniform(-0.05, 0.05))]
            else:
                x, y = rng.uniform(0.08, 0.92), rng.uniform(0.6, 0.95)
                act.path = [(0.0, x, y), (seconds, x, y)]
        if act.kind == "rodent":   # a rodent is a violation for as long as it is seen
            act.violations = {"老鼠": [(act.enter_s, act.leave_s)]}
        actors.append(act)
    return actors


def _clip_truth(actors: list[Actor], clock_start: dt.datetime, staff_hours=STAFF_HOURS):
    rows = []
    for a in actors:
        for v, ivs in a.violations.items():
            for s0, s1 in ivs:
                s0, s1 = max(s0, a.enter_s), min(s1, a.leave_s)
                if s1 - s0 > 0.05:
                    rows.append((v, a.track_id, round(s0, 2), round(s1, 2)))
        if a.kind == "person" and a.role == "stranger":
            rows.append(("陌生人闯入", a.track_id, round(a.enter_s, 2), round(a.leave_s, 2)))
    rows.sort(key=lambda r: (r[2], r[1], r[0]))
    return rows


def _active(a: Actor, v: str, t: float) -> bool:
    return any(s0 <= t < s1 for s0, s1 in a.violations.get(v, []))


def make_video(path, seconds: float = 60, fps: float = 10, seed: int = 0, size=(640, 360),
               scenario: dict | str | None = None, progress: Callable[[int], object] | None = None) -> Timeline:
    """Render a synthetic kitchen clip and its ground truth; returns the Timeline.

    `scenario`: None (random, from the seed), a preset name from PRESETS, or a dict
    {"clock_start": ISO time with offset, "actors": [{"track_id", "kind": person|rodent|bin,
    "enter_s", "leave_s", "role": staff|stranger, "spec": {PersonSpec fields},
    "violations": {"未戴厨师帽": [[start_s, end_s]], ...}, "path": [[t, x_frac, y_frac]]}]}.
    The clip's wall-clock start (frame 0) is `clock_start` (default 2026-11-26 10:00 +08:00);
    it is written to `<clip>.meta.json`. Track ids: persons 1.., rodents 101.., bins 201...
    A stranger (role "stranger") gives a 陌生人闯入 row for its whole presence: put it in a
    clip whose clock time is outside the kitchen's staff hours (STAFF_HOURS is what the
    presets assume; the pipeline's own staff-hour setting decides).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([int(seed), 7])
    if scenario is None:
        scen = _random_scenario(rng, seconds)
    elif isinstance(scenario, str):
        scen = PRESETS[scenario](seconds)
    else:
        scen = scenario
    clock_start = dt.datetime.fromisoformat(scen.get("clock_start", "2026-11-26T10:00:00+08:00"))
    if clock_start.tzinfo is None:
        clock_start = clock_start.replace(tzinfo=SHANGHAI)
    actors = _build_actors(rng, scen, seconds)
    w, h = int(size[0]), int(size[1])
    bg, lay = _background(rng, w, h)
    lay.island = None
    bg = _lighting(np.random.default_rng([int(seed), 8]), bg, strength=0.0)
    # fixed looks per person
    specs = {}
    for a in actors:
        if a.kind == "person":
            base = random_person(rng, lay, x=0.5 * w, foot_y=0.8 * h)
            base.hat = _pick(rng, ["toque", "toque", "cap", "bouffant"])
            base.mask, base.torso, base.phone, base.smoking, base.facing = True, "uniform", "", False, "front"
            base.arms = "work"
            for k, v in a.spec.items():
                setattr(base, k, v)
            specs[a.track_id] = base
        elif a.kind == "bin":
            specs[a.track_id] = _jitter(rng, _pick(rng, [(60, 120, 40), (150, 100, 30), (90, 90, 90)]), 10)
    fourcc = cv2.VideoWriter_fourcc(*("MJPG" if path.suffix.lower() == ".avi" else "mp4v"))
    writer = cv2.VideoWriter(str(path), fourcc, float(fps), (w, h))
    if not writer.isOpened():
        raise OSError(f"cannot open a video writer for {path}")
    n_frames = int(round(seconds * fps))
    noise_rng = np.random.default_rng([int(seed), 9])
    noise_bank = [noise_rng.normal(0, 1.2, size=(h, w, 3)).astype(np.int16) for _ in range(4)]
    step = progress or (lambda _n: None)
    try:
        for f in range(n_frames):
            t = f / fps
            frame = bg.copy()
            p = Painter(frame, None)
            drawn = []
            for a in actors:
                if not (a.enter_s <= t < a.leave_s):
                    continue
                xf, yf = _interp_path(a.path, t)
                x, y = xf * w, lay.floor_y + (h - lay.floor_y) * yf
                drawn.append((y, a, x))
            drawn.sort(key=lambda d: d[0])
            for y, a, x in drawn:
                frng = np.random.default_rng([int(seed), 10, a.track_id])   # same details every frame
                if a.kind == "person":
                    s = PersonSpec(**{**specs[a.track_id].__dict__})
                    s.x, s.foot_y = x, y
                    s.height = _height_at(lay, y)
                    x_prev, _ = _interp_path(a.path, max(a.enter_s, t - 0.3))
                    moving = abs(xf - x_prev) > 0.003
                    s.walk_phase = t * 6.0 if moving else 0.0
                    s.arms = "down" if moving else s.arms
                    for v, (attr, val) in _VIOLATION_LOOK.items():
                        if _active(a, v, t):
                            setattr(s, attr, val)
                    if s.phone or s.smoking:
                        s.arms = "up"
                    draw_person(p, frng, s, None, lay.tilt)
                elif a.kind == "rodent":
                    size_px = _height_at(lay, y) * 0.13
                    d = 1 if a.path[-1][1] > a.path[0][1] else -1
                    draw_rodent(p, frng, x, y, size_px, d, None, phase=t * 20)
                else:
                    draw_bin(p, frng, x, y, _height_at(lay, y) * 0.38, _active(a, "垃圾桶未盖", t), None,
                             col=specs[a.track_id])
            out = np.clip(frame.astype(np.int16) + noise_bank[f % 4], 0, 255).astype(np.uint8)
            writer.write(out)
            step(1)
    finally:
        writer.release()
    rows = _clip_truth(actors, clock_start)
    truth_path = path.with_suffix(".truth.csv")
    with open(truth_path, "w", newline="", encoding="utf-8") as fh:
        wr = csv.writer(fh)
        wr.writerow(["violation", "track_id", "start_s", "end_s"])
        wr.writerows(rows)
    presence = [(a.track_id, a.kind, round(a.enter_s, 2), round(a.leave_s, 2)) for a in actors]
    meta_path = path.with_suffix(".meta.json")
    meta = {"video": path.name, "clock_start": clock_start.isoformat(), "timezone": "Asia/Shanghai",
            "fps": fps, "seconds": seconds, "frames": n_frames, "size": [w, h], "seed": seed,
            "staff_hours_assumed": list(STAFF_HOURS),
            "presence": [{"track_id": t_, "kind": k, "enter_s": e, "leave_s": l_, "role": a.role}
                         for (t_, k, e, l_), a in zip(presence, actors)]}
    meta_path.write_text(json.dumps(meta, ensure_ascii=False, indent=1), encoding="utf-8")
    return Timeline(path=path, fps=float(fps), seconds=float(seconds), size=(w, h), clock_start=clock_start,
                    rows=rows, presence=presence, truth_path=truth_path, meta_path=meta_path)


def write_video_set(out_dir, n: int = 6, seconds: float = 60, seed: int = 0, fps: float = 10,
                    size=(640, 360), suffix: str = ".mp4",
                    progress: Callable[[int], object] | None = None) -> list[Timeline]:
    """Held-out evaluation clips `kitchen_000.mp4`... with truth and meta sidecars.

    Clip i uses seed `seed * 1000 + i`; the first clips are the presets (quiet,
    compliant, night_stranger) when n > 3, the rest random minutes.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    presets = list(PRESETS) if n > 3 else []
    out = []
    for i in range(int(n)):
        scen = presets[i] if i < len(presets) else None
        out.append(make_video(out_dir / f"kitchen_{i:03d}{suffix}", seconds=seconds, fps=fps,
                              seed=int(seed) * 1000 + i, size=size, scenario=scen))
        if progress:
            progress(1)
    return out


def read_truth(path) -> "object":
    """The ground-truth CSV of a clip as a DataFrame (violation, track_id, start_s, end_s)."""
    import pandas as pd
    return pd.read_csv(path, dtype={"violation": str, "track_id": int, "start_s": float, "end_s": float})


def cpu_count() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))
