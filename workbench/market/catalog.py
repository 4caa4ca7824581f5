"""The commodity catalogue and the test items: what a rapid-test record may name.

A commodity outside this catalogue is quarantined at intake (样品名称不在商品目录中): a
misspelt or unknown name would otherwise form its own group in every bulletin. The
catalogue follows the market supervision bureau's commodity classes (DOMAIN.md); add a
commodity here when the bureau adds it to its list.
"""
from __future__ import annotations

CATEGORIES: dict[str, tuple[str, ...]] = {
    "蔬菜": ("韭菜", "芹菜", "菠菜", "小白菜", "上海青", "油麦菜", "豇豆", "空心菜", "生菜", "黄瓜", "辣椒",
            "茄子", "大白菜", "生姜", "萝卜", "胡萝卜", "西红柿", "番茄", "土豆", "莴笋", "芥菜", "苋菜",
            "菜心", "西兰花", "花菜", "四季豆", "扁豆", "荷兰豆", "苦瓜", "丝瓜", "冬瓜", "南瓜", "葱",
            "大蒜", "蒜苗", "香菜", "茼蒙", "茼蒿", "红菜薹", "白菜薹", "莲藕", "山药", "芋头", "洋葱",
            "青椒", "豆芽", "蘑菇", "香菇", "金针菇", "木耳菜", "韭黄", "藠头", "春笋", "竹笋"),
    "水果": ("草莓", "葡萄", "苹果", "柑橘", "桃子", "梨", "香蕉", "西瓜", "哈密瓜", "猕猴桃", "橙子", "柚子",
            "李子", "杨梅", "樱桃", "火龙果", "芒果", "枇杷", "冬枣", "荔枝", "龙眼"),
    "猪肉": ("猪肉", "猪肝", "猪肾", "猪肺", "猪蹄", "排骨"),
    "牛羊肉": ("牛肉", "羊肉", "牛肝", "羊肝"),
    "禽肉": ("鸡肉", "鸭肉", "鹅肉", "鸡肝", "鸭肝"),
    "禽蛋": ("鸡蛋", "鸭蛋", "鹌鹑蛋", "皮蛋"),
    "水产": ("草鱼", "鲫鱼", "鲈鱼", "黄鳝", "基围虾", "小龙虾", "水发鱿鱼", "牛百叶", "鲢鱼", "鳙鱼", "鲤鱼",
            "黄颡鱼", "鳊鱼", "泥鳅", "甲鱼", "花甲", "海带", "鱿鱼", "带鱼", "黑鱼", "桂鱼", "对虾", "螃蟹",
            "水发海参", "水发毛肚"),
    "干货": ("银耳", "黄花菜", "枸杞", "粉丝", "木耳", "香菇干", "红枣", "莲子", "百合", "腐竹", "笋干", "桂圆干",
            "辣椒干", "八角", "花椒"),
    "腌腊制品": ("腊肉", "香肠", "腊鱼", "酸菜", "剁辣椒", "腊鸭", "咸菜", "榨菜", "酸豆角", "腊肠", "火腿"),
    "豆制品": ("豆腐", "豆干", "千张", "油豆腐", "腐竹湿品", "豆浆"),
    "粮油": ("大米", "面粉", "食用油", "面条", "米粉"),
    "熟食": ("卤菜", "熟肉", "凉菜", "卤肉"),
}
COMMODITY_CATEGORY: dict[str, str] = {c: cat for cat, names in CATEGORIES.items() for c in names}
# The goods classes schools buy by (canteen_suppliers.goods: "蔬菜、肉类"): a commodity class
# named otherwise in the purchase lists. The linkage notifies a school of a positive only for
# goods it buys from that market.
GOODS_OF_CATEGORY: dict[str, str] = {"猪肉": "肉类", "牛羊肉": "肉类", "禽肉": "肉类", "腌腊制品": "肉类",
                                     "熟食": "肉类", "粮油": "粮油", "禽蛋": "禽蛋"}


def goods_of(commodity: str | None, category: str | None = None) -> str | None:
    """The purchase-list goods class of a commodity (蔬菜, 水果, 肉类, 水产, 干货 …)."""
    cat = category if isinstance(category, str) and category else COMMODITY_CATEGORY.get(commodity or "")
    return GOODS_OF_CATEGORY.get(cat, cat) if cat else None
COMMODITIES = frozenset(COMMODITY_CATEGORY)

PESTICIDE = "有机磷和氨基甲酸酯类农药残留"
# test item -> (method kind, banned substance). Kinds: enzyme (inhibition %, positive at
# reading >= threshold), card (colloidal gold 0/1, positive at 1), colour (mg/kg, positive
# above the limit: reading > threshold).
TEST_ITEMS: dict[str, tuple[str, bool]] = {
    PESTICIDE: ("enzyme", False),
    "克伦特罗": ("card", True), "莱克多巴胺": ("card", True), "沙丁胺醇": ("card", True),
    "孔雀石绿": ("card", True), "硝基呋喃": ("card", True),
    "二氧化硫": ("colour", False), "甲醛": ("colour", False), "亚硝酸盐": ("colour", False),
}
BANNED = tuple(k for k, (_, banned) in TEST_ITEMS.items() if banned)
# minutes a reader needs per test (DOMAIN.md): enzyme 10–15, card 5–10, colorimetric ~8
REACTION_MINUTES = {"enzyme": 10, "card": 5, "colour": 8}

