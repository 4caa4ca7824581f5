"""Chinese person names and small name pools, drawn from a seeded generator."""
from __future__ import annotations

import numpy as np

# Common surnames in Hunan, roughly by frequency.
_SURNAMES = (
    "刘李陈王张彭谭罗周唐黄易邓曾贺龙杨吴胡肖谢文蒋钟廖何郭欧邹许朱袁汤赵阳颜伍"
    "孙尹姚毛段雷丁蔡夏石左龚向符戴熊卢马田邱"
)
_SURNAME_W = np.linspace(3.0, 0.6, len(_SURNAMES))
_GIVEN = (
    "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰红建国志文斌辉鹏飞俊峰"
    "波宇浩然晨欣怡佳琪梦婷雪琳海燕春梅立新林德江亮清松湘湖军卫东南永红宏"
)


def person_names(rng: np.random.Generator, n: int, unique: bool = False) -> list[str]:
    """`n` plausible full names (surname + one or two characters)."""
    out: list[str] = []
    seen: set[str] = set()
    p = _SURNAME_W / _SURNAME_W.sum()
    while len(out) < n:
        k = n - len(out) if not unique else max(8, 2 * (n - len(out)))
        sur = rng.choice(len(_SURNAMES), size=k, p=p)
        two = rng.random(k) < 0.7
        g1 = rng.integers(0, len(_GIVEN), size=k)
        g2 = rng.integers(0, len(_GIVEN), size=k)
        for s, t, a, b in zip(sur, two, g1, g2):
            name = _SURNAMES[s] + _GIVEN[a] + (_GIVEN[b] if t and b != a else "")
            if unique:
                if name in seen:
                    continue
                seen.add(name)
            out.append(name)
            if len(out) == n:
                break
    return out
