//! Embedded reference tables: population, places, names and code tables.
//!
//! Codes marked *illustrative* have the real shape (length, character classes, code system)
//! but were not checked against the official masters; codes copied from the JP-CLINS examples
//! or from `shared/formats/sources.md` are marked *fixture*.

/// Japan's population by 5-year age band and sex, in thousands, rounded (after 総務省統計局
/// 人口推計, 2023-10-01). Last band is 100–104.
pub const AGE_PYRAMID: &[(u32, u64, u64)] = &[
    (0, 2135, 2031),
    (5, 2470, 2351),
    (10, 2662, 2533),
    (15, 2800, 2660),
    (20, 3170, 3015),
    (25, 3270, 3110),
    (30, 3290, 3150),
    (35, 3640, 3510),
    (40, 4050, 3930),
    (45, 4810, 4680),
    (50, 4740, 4650),
    (55, 4060, 4060),
    (60, 3660, 3730),
    (65, 3660, 3860),
    (70, 4320, 4780),
    (75, 3300, 3890),
    (80, 2540, 3400),
    (85, 1420, 2500),
    (90, 480, 1400),
    (95, 80, 450),
    (100, 10, 80),
];

/// A prefecture: JIS code, name, population (10 thousands, 2023, rounded), capital, postcode prefix.
#[derive(Debug)]
pub struct Prefecture {
    pub code: u32,
    pub name: &'static str,
    pub pop: u64,
    pub city: &'static str,
    pub zip3: &'static str,
}

macro_rules! pref {
    ($c:expr, $n:expr, $p:expr, $city:expr, $z:expr) => {
        Prefecture { code: $c, name: $n, pop: $p, city: $city, zip3: $z }
    };
}

pub const PREFECTURES: &[Prefecture] = &[
    pref!(1, "北海道", 509, "札幌市", "060"),
    pref!(2, "青森県", 118, "青森市", "030"),
    pref!(3, "岩手県", 116, "盛岡市", "020"),
    pref!(4, "宮城県", 226, "仙台市", "980"),
    pref!(5, "秋田県", 91, "秋田市", "010"),
    pref!(6, "山形県", 102, "山形市", "990"),
    pref!(7, "福島県", 177, "福島市", "960"),
    pref!(8, "茨城県", 282, "水戸市", "310"),
    pref!(9, "栃木県", 190, "宇都宮市", "320"),
    pref!(10, "群馬県", 190, "前橋市", "371"),
    pref!(11, "埼玉県", 733, "さいたま市", "330"),
    pref!(12, "千葉県", 627, "千葉市", "260"),
    pref!(13, "東京都", 1409, "新宿区", "160"),
    pref!(14, "神奈川県", 923, "横浜市", "220"),
    pref!(15, "新潟県", 211, "新潟市", "950"),
    pref!(16, "富山県", 100, "富山市", "930"),
    pref!(17, "石川県", 111, "金沢市", "920"),
    pref!(18, "福井県", 74, "福井市", "910"),
    pref!(19, "山梨県", 80, "甲府市", "400"),
    pref!(20, "長野県", 200, "長野市", "380"),
    pref!(21, "岐阜県", 192, "岐阜市", "500"),
    pref!(22, "静岡県", 355, "静岡市", "420"),
    pref!(23, "愛知県", 748, "名古屋市", "450"),
    pref!(24, "三重県", 172, "津市", "514"),
    pref!(25, "滋賀県", 141, "大津市", "520"),
    pref!(26, "京都府", 254, "京都市", "600"),
    pref!(27, "大阪府", 876, "大阪市", "530"),
    pref!(28, "兵庫県", 537, "神戸市", "650"),
    pref!(29, "奈良県", 130, "奈良市", "630"),
    pref!(30, "和歌山県", 90, "和歌山市", "640"),
    pref!(31, "鳥取県", 54, "鳥取市", "680"),
    pref!(32, "島根県", 65, "松江市", "690"),
    pref!(33, "岡山県", 186, "岡山市", "700"),
    pref!(34, "広島県", 274, "広島市", "730"),
    pref!(35, "山口県", 131, "山口市", "753"),
    pref!(36, "徳島県", 70, "徳島市", "770"),
    pref!(37, "香川県", 93, "高松市", "760"),
    pref!(38, "愛媛県", 131, "松山市", "790"),
    pref!(39, "高知県", 67, "高知市", "780"),
    pref!(40, "福岡県", 509, "福岡市", "810"),
    pref!(41, "佐賀県", 80, "佐賀市", "840"),
    pref!(42, "長崎県", 128, "長崎市", "850"),
    pref!(43, "熊本県", 172, "熊本市", "860"),
    pref!(44, "大分県", 111, "大分市", "870"),
    pref!(45, "宮崎県", 105, "宮崎市", "880"),
    pref!(46, "鹿児島県", 155, "鹿児島市", "890"),
    pref!(47, "沖縄県", 147, "那覇市", "900"),
];

pub const TOWNS: &[&str] =
    &["本町", "中央", "栄町", "緑町", "旭町", "幸町", "宮前", "新町", "若葉", "桜台", "東町", "港町"];

/// Family names (kanji, katakana), most frequent first.
pub const FAMILY_NAMES: &[(&str, &str)] = &[
    ("佐藤", "サトウ"),
    ("鈴木", "スズキ"),
    ("高橋", "タカハシ"),
    ("田中", "タナカ"),
    ("伊藤", "イトウ"),
    ("渡辺", "ワタナベ"),
    ("山本", "ヤマモト"),
    ("中村", "ナカムラ"),
    ("小林", "コバヤシ"),
    ("加藤", "カトウ"),
    ("吉田", "ヨシダ"),
    ("山田", "ヤマダ"),
    ("佐々木", "ササキ"),
    ("山口", "ヤマグチ"),
    ("松本", "マツモト"),
    ("井上", "イノウエ"),
    ("木村", "キムラ"),
    ("林", "ハヤシ"),
    ("斎藤", "サイトウ"),
    ("清水", "シミズ"),
    ("山崎", "ヤマザキ"),
    ("森", "モリ"),
    ("池田", "イケダ"),
    ("橋本", "ハシモト"),
    ("阿部", "アベ"),
    ("石川", "イシカワ"),
    ("山下", "ヤマシタ"),
    ("中島", "ナカジマ"),
    ("石井", "イシイ"),
    ("小川", "オガワ"),
    ("前田", "マエダ"),
    ("岡田", "オカダ"),
    ("長谷川", "ハセガワ"),
    ("藤田", "フジタ"),
    ("後藤", "ゴトウ"),
    ("近藤", "コンドウ"),
    ("村上", "ムラカミ"),
    ("遠藤", "エンドウ"),
    ("青木", "アオキ"),
    ("坂本", "サカモト"),
    ("福田", "フクダ"),
    ("太田", "オオタ"),
    ("西村", "ニシムラ"),
    ("藤井", "フジイ"),
    ("金子", "カネコ"),
    ("岡本", "オカモト"),
    ("藤原", "フジワラ"),
    ("中野", "ナカノ"),
    ("三浦", "ミウラ"),
    ("原田", "ハラダ"),
    ("小野", "オノ"),
    ("田村", "タムラ"),
    ("竹内", "タケウチ"),
    ("中山", "ナカヤマ"),
    ("和田", "ワダ"),
    ("石田", "イシダ"),
    ("上田", "ウエダ"),
    ("森田", "モリタ"),
    ("小島", "コジマ"),
    ("柴田", "シバタ"),
    ("工藤", "クドウ"),
    ("酒井", "サカイ"),
    ("宮崎", "ミヤザキ"),
    ("横山", "ヨコヤマ"),
    ("内田", "ウチダ"),
    ("高木", "タカギ"),
    ("安藤", "アンドウ"),
    ("谷口", "タニグチ"),
    ("大野", "オオノ"),
    ("丸山", "マルヤマ"),
    ("今井", "イマイ"),
    ("河野", "コウノ"),
    ("武田", "タケダ"),
    ("村田", "ムラタ"),
    ("上野", "ウエノ"),
    ("杉山", "スギヤマ"),
    ("増田", "マスダ"),
    ("菅原", "スガワラ"),
    ("平野", "ヒラノ"),
    ("小山", "コヤマ"),
    ("千葉", "チバ"),
    ("久保", "クボ"),
    ("松井", "マツイ"),
    ("岩崎", "イワサキ"),
    ("木下", "キノシタ"),
    ("野口", "ノグチ"),
    ("松田", "マツダ"),
    ("菊地", "キクチ"),
    ("佐野", "サノ"),
    ("大塚", "オオツカ"),
    ("新井", "アライ"),
    ("北村", "キタムラ"),
];

/// Given names (kanji, katakana, born before 1975?).
pub const MALE_NAMES: &[(&str, &str, bool)] = &[
    ("浩", "ヒロシ", true),
    ("博", "ヒロシ", true),
    ("茂", "シゲル", true),
    ("清", "キヨシ", true),
    ("勇", "イサム", true),
    ("隆", "タカシ", true),
    ("実", "ミノル", true),
    ("正", "タダシ", true),
    ("修", "オサム", true),
    ("進", "ススム", true),
    ("豊", "ユタカ", true),
    ("和夫", "カズオ", true),
    ("正夫", "マサオ", true),
    ("秀樹", "ヒデキ", true),
    ("健一", "ケンイチ", true),
    ("譲二", "ジョージ", true),
    ("誠", "マコト", false),
    ("大輔", "ダイスケ", false),
    ("健太", "ケンタ", false),
    ("拓也", "タクヤ", false),
    ("直樹", "ナオキ", false),
    ("翔太", "ショウタ", false),
    ("俊介", "シュンスケ", false),
    ("亮", "リョウ", false),
    ("悠真", "ユウマ", false),
    ("蓮", "レン", false),
    ("陽翔", "ハルト", false),
    ("湊", "ミナト", false),
    ("大翔", "ヒロト", false),
    ("颯太", "ソウタ", false),
];

pub const FEMALE_NAMES: &[(&str, &str, bool)] = &[
    ("幸子", "サチコ", true),
    ("和子", "カズコ", true),
    ("節子", "セツコ", true),
    ("洋子", "ヨウコ", true),
    ("恭子", "キョウコ", true),
    ("京子", "キョウコ", true),
    ("順子", "ジュンコ", true),
    ("久美子", "クミコ", true),
    ("由美子", "ユミコ", true),
    ("千代", "チヨ", true),
    ("静江", "シズエ", true),
    ("明美", "アケミ", true),
    ("茉莉", "マリー", true),
    ("裕子", "ユウコ", false),
    ("真由美", "マユミ", false),
    ("智子", "トモコ", false),
    ("美穂", "ミホ", false),
    ("沙織", "サオリ", false),
    ("麗奈", "レーナ", false),
    ("愛", "アイ", false),
    ("舞", "マイ", false),
    ("彩", "アヤ", false),
    ("陽菜", "ヒナ", false),
    ("結衣", "ユイ", false),
    ("葵", "アオイ", false),
    ("凛", "リン", false),
    ("芽依", "メイ", false),
    ("紬", "ツムギ", false),
];

/// Hiragana used in 国保 記号.
pub const KIGO_KANA: &[&str] =
    &["あ", "い", "う", "え", "か", "き", "こ", "さ", "し", "た", "な", "は", "ひ", "ま", "や"];

/// A chronic condition with its codes, prevalence model, drugs and labs.
#[derive(Debug)]
pub struct Chronic {
    pub name: &'static str,
    /// MEDIS 病名管理番号 (8 digits).
    pub medis: &'static str,
    /// ICD-10 (2013), no dot.
    pub icd10: &'static str,
    /// レセ電 傷病名コード (7 digits).
    pub receipt: &'static str,
    /// Treated prevalence in percent for age bands 0-19, 20-39, 40-49, 50-59, 60-69, 70-79, 80+.
    pub prevalence: [f64; 7],
    /// Prevalence multiplier for men (women get 1).
    pub male_factor: f64,
    /// Indices into [`DRUGS`].
    pub drugs: &'static [usize],
    /// Indices into [`LABS`] measured at follow-up.
    pub labs: &'static [usize],
    /// Receipt management fee (特定疾患療養管理料) applies.
    pub managed: bool,
}

/// Chronic conditions. MEDIS 20061593 (高血圧症) is *fixture*; other codes *illustrative*.
/// Prevalences are treated (patient) shares calibrated to the order of magnitude of 令和2年
/// 患者調査 totals (高血圧性疾患 ≈1,511万, 糖尿病 ≈579万, 脂質異常症 ≈401万 persons).
pub const CHRONIC: &[Chronic] = &[
    Chronic {
        name: "高血圧症",
        medis: "20061593",
        icd10: "I10",
        receipt: "8833421",
        prevalence: [0.0, 1.0, 5.0, 11.0, 19.0, 27.0, 31.0],
        male_factor: 1.15,
        drugs: &[0, 1],
        labs: &[5, 7, 8, 9],
        managed: true,
    },
    Chronic {
        name: "２型糖尿病",
        medis: "20063254",
        icd10: "E119",
        receipt: "2500015",
        prevalence: [0.1, 0.8, 3.0, 6.0, 9.0, 11.0, 10.0],
        male_factor: 1.5,
        drugs: &[2, 3],
        labs: &[0, 1, 7, 8],
        managed: true,
    },
    Chronic {
        name: "脂質異常症",
        medis: "20086893",
        icd10: "E785",
        receipt: "2724010",
        prevalence: [0.0, 0.5, 2.5, 5.0, 8.0, 9.0, 6.0],
        male_factor: 0.8,
        drugs: &[4],
        labs: &[2, 3, 4, 5, 6],
        managed: true,
    },
    Chronic {
        name: "気管支喘息",
        medis: "20055520",
        icd10: "J459",
        receipt: "4939004",
        prevalence: [4.0, 2.5, 2.5, 2.5, 3.0, 3.5, 3.5],
        male_factor: 1.0,
        drugs: &[5],
        labs: &[11],
        managed: true,
    },
    Chronic {
        name: "逆流性食道炎",
        medis: "20069820",
        icd10: "K210",
        receipt: "5301005",
        prevalence: [0.0, 0.8, 2.0, 3.0, 4.0, 5.0, 5.0],
        male_factor: 1.0,
        drugs: &[6],
        labs: &[],
        managed: true,
    },
    Chronic {
        name: "うつ病",
        medis: "20054612",
        icd10: "F329",
        receipt: "2961003",
        prevalence: [0.3, 2.0, 2.2, 2.0, 1.5, 1.2, 1.2],
        male_factor: 0.7,
        drugs: &[7],
        labs: &[],
        managed: false,
    },
    Chronic {
        name: "変形性膝関節症",
        medis: "20067352",
        icd10: "M170",
        receipt: "7153010",
        prevalence: [0.0, 0.1, 0.8, 2.5, 5.0, 8.0, 10.0],
        male_factor: 0.5,
        drugs: &[8],
        labs: &[],
        managed: false,
    },
    Chronic {
        name: "心房細動",
        medis: "20059310",
        icd10: "I48",
        receipt: "4273006",
        prevalence: [0.0, 0.0, 0.2, 0.6, 1.5, 3.0, 4.0],
        male_factor: 1.8,
        drugs: &[9],
        labs: &[9, 10, 12],
        managed: true,
    },
    Chronic {
        name: "慢性腎臓病",
        medis: "20085841",
        icd10: "N189",
        receipt: "5859004",
        prevalence: [0.0, 0.1, 0.4, 0.8, 1.8, 3.5, 5.0],
        male_factor: 1.3,
        drugs: &[1],
        labs: &[7, 8, 9, 10],
        managed: true,
    },
    Chronic {
        name: "アルツハイマー型認知症",
        medis: "20084950",
        icd10: "G309",
        receipt: "3310015",
        prevalence: [0.0, 0.0, 0.0, 0.1, 0.6, 3.0, 12.0],
        male_factor: 0.7,
        drugs: &[10],
        labs: &[],
        managed: false,
    },
];

/// An acute condition: codes, seasonal weights per month (Jan..Dec), drugs, tests.
#[derive(Debug)]
pub struct Acute {
    pub name: &'static str,
    pub medis: &'static str,
    pub icd10: &'static str,
    pub receipt: &'static str,
    pub season: [u64; 12],
    pub drugs: &'static [usize],
    /// Indices into [`LABS`] (infection tests included).
    pub labs: &'static [usize],
}

/// Acute conditions, *illustrative* codes except 4659007 (急性上気道炎, seen in the receipt sample).
pub const ACUTE: &[Acute] = &[
    Acute {
        name: "急性上気道炎",
        medis: "20050880",
        icd10: "J069",
        receipt: "4659007",
        season: [14, 12, 9, 7, 6, 6, 6, 6, 6, 8, 10, 13],
        drugs: &[11, 12],
        labs: &[],
    },
    Acute {
        name: "インフルエンザ",
        medis: "20052473",
        icd10: "J111",
        receipt: "4870002",
        season: [40, 30, 10, 2, 0, 0, 0, 0, 0, 1, 4, 20],
        drugs: &[13, 12],
        labs: &[13],
    },
    Acute {
        name: "感染性胃腸炎",
        medis: "20051036",
        icd10: "A09",
        receipt: "0090008",
        season: [12, 10, 8, 6, 5, 5, 5, 5, 5, 6, 9, 14],
        drugs: &[14],
        labs: &[],
    },
    Acute {
        name: "急性気管支炎",
        medis: "20052630",
        icd10: "J209",
        receipt: "4660002",
        season: [12, 11, 9, 7, 6, 6, 6, 6, 6, 8, 9, 11],
        drugs: &[11, 15],
        labs: &[11, 12],
    },
    Acute {
        name: "ＣＯＶＩＤ－１９",
        medis: "20100001",
        icd10: "U071",
        receipt: "8850106",
        season: [12, 9, 5, 4, 4, 5, 10, 12, 8, 4, 4, 7],
        drugs: &[12],
        labs: &[14],
    },
];

/// A drug: name, YJ (12), HOT9 (9), receipt drug code (9), dose unit, points per unit,
/// units per day, usage text. Carbocisteine codes are *fixture*; others *illustrative*.
#[derive(Debug)]
pub struct Drug {
    pub name: &'static str,
    pub yj: &'static str,
    pub hot9: &'static str,
    pub receipt: &'static str,
    pub unit: &'static str,
    pub unit_code: &'static str,
    pub points_x10: u64,
    pub per_day: u32,
    pub usage: &'static str,
    pub usage_code: &'static str,
}

macro_rules! drug {
    ($n:expr, $yj:expr, $hot:expr, $r:expr, $u:expr, $uc:expr, $p:expr, $d:expr, $us:expr, $usc:expr) => {
        Drug {
            name: $n,
            yj: $yj,
            hot9: $hot,
            receipt: $r,
            unit: $u,
            unit_code: $uc,
            points_x10: $p,
            per_day: $d,
            usage: $us,
            usage_code: $usc,
        }
    };
}

const MORNING: (&str, &str) = ("内服・経口・１日１回朝食後", "1011000400000000");
const TID: (&str, &str) = ("内服・経口・１日３回朝昼夕食後", "1013044400000000");
const BID: (&str, &str) = ("内服・経口・１日２回朝夕食後", "1012040400000000");
const BEDTIME: (&str, &str) = ("内服・経口・１日１回就寝前", "1010010000000000");

pub const DRUGS: &[Drug] = &[
    drug!("アムロジピン錠５ｍｇ", "2171022F1173", "107592502", "610463129", "錠", "TAB", 101, 1, MORNING.0, MORNING.1),
    drug!(
        "カンデサルタン錠８ｍｇ",
        "2149040F2033",
        "112470301",
        "620004513",
        "錠",
        "TAB",
        165,
        1,
        MORNING.0,
        MORNING.1
    ),
    drug!(
        "メトホルミン塩酸塩錠２５０ｍｇ",
        "3962002F1124",
        "105487302",
        "620008905",
        "錠",
        "TAB",
        101,
        2,
        BID.0,
        BID.1
    ),
    drug!(
        "シタグリプチン錠５０ｍｇ",
        "3969010F1024",
        "118709901",
        "622004601",
        "錠",
        "TAB",
        1280,
        1,
        MORNING.0,
        MORNING.1
    ),
    drug!(
        "アトルバスタチン錠１０ｍｇ",
        "2189015F2059",
        "113387701",
        "622079501",
        "錠",
        "TAB",
        249,
        1,
        MORNING.0,
        MORNING.1
    ),
    drug!(
        "モンテルカスト錠１０ｍｇ",
        "4490026F1034",
        "114567101",
        "622411601",
        "錠",
        "TAB",
        452,
        1,
        BEDTIME.0,
        BEDTIME.1
    ),
    drug!(
        "ボノプラザン錠１０ｍｇ",
        "2329030F1020",
        "122994901",
        "622429001",
        "錠",
        "TAB",
        1213,
        1,
        MORNING.0,
        MORNING.1
    ),
    drug!(
        "エスシタロプラム錠１０ｍｇ",
        "1179054F1022",
        "119959701",
        "622060501",
        "錠",
        "TAB",
        1307,
        1,
        BEDTIME.0,
        BEDTIME.1
    ),
    drug!(
        "ロキソプロフェンＮａ錠６０ｍｇ",
        "1149019F1560",
        "103957202",
        "620098801",
        "錠",
        "TAB",
        101,
        3,
        TID.0,
        TID.1
    ),
    drug!("アピキサバン錠５ｍｇ", "3339004F2022", "121585801", "622208601", "錠", "TAB", 2538, 2, BID.0, BID.1),
    drug!(
        "ドネペジル塩酸塩錠５ｍｇ",
        "1190012F2064",
        "110936802",
        "620009106",
        "錠",
        "TAB",
        451,
        1,
        MORNING.0,
        MORNING.1
    ),
    drug!(
        "カルボシステイン錠２５０ｍｇ「サワイ」",
        "2233002F1280",
        "103831601",
        "620004422",
        "錠",
        "TAB",
        59,
        3,
        TID.0,
        TID.1
    ),
    drug!("アセトアミノフェン錠２００ｍｇ", "1141007F1063", "105465801", "620007736", "錠", "TAB", 59, 3, TID.0, TID.1),
    drug!(
        "オセルタミビルカプセル７５ｍｇ",
        "6250021M1027",
        "112869501",
        "620003853",
        "カプセル",
        "CAP",
        1886,
        2,
        BID.0,
        BID.1
    ),
    drug!("ビオフェルミンＲ錠", "2316004F1036", "101456701", "620006489", "錠", "TAB", 59, 3, TID.0, TID.1),
    drug!(
        "クラリスロマイシン錠２００ｍｇ",
        "6149003F2038",
        "107825601",
        "620000402",
        "錠",
        "TAB",
        375,
        2,
        BID.0,
        BID.1
    ),
];

/// How a lab result is written.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LabValue {
    /// Numeric: mean, sd, decimals, mean when the linked condition is present.
    Quantity { mean: f64, sd: f64, decimals: u32, sick_mean: f64 },
    /// Qualitative infection test: positive rate when suspected.
    Qualitative { positive_rate: f64 },
}

/// A lab item: JLAC10 (17), local code, display, unit, value model, receipt procedure code.
#[derive(Debug)]
pub struct Lab {
    pub name: &'static str,
    pub abbrev: &'static str,
    pub jlac10: &'static str,
    pub local: &'static str,
    pub unit: &'static str,
    pub value: LabValue,
    pub receipt: &'static str,
    pub points: u64,
    pub infection: bool,
}

macro_rules! lab {
    ($n:expr, $a:expr, $j:expr, $l:expr, $u:expr, $v:expr, $r:expr, $p:expr, $i:expr) => {
        Lab { name: $n, abbrev: $a, jlac10: $j, local: $l, unit: $u, value: $v, receipt: $r, points: $p, infection: $i }
    };
}

const fn q(mean: f64, sd: f64, decimals: u32, sick_mean: f64) -> LabValue {
    LabValue::Quantity { mean, sd, decimals, sick_mean }
}

/// Lab items. K, ALB, eGFR JLAC10 codes are *fixture*, AST from sources.md; others *illustrative*.
pub const LABS: &[Lab] = &[
    lab!("ＨｂＡ１ｃ", "HbA1c", "3D046000001906202", "0000100101", "%", q(5.6, 0.35, 1, 7.3), "160010010", 49, false),
    lab!(
        "グルコース",
        "GLU",
        "3D010000001926101",
        "0000100102",
        "mg/dL",
        q(96.0, 10.0, 0, 152.0),
        "160019410",
        11,
        false
    ),
    lab!(
        "ＬＤＬコレステロール",
        "LDL-C",
        "3F077000002327101",
        "0000100103",
        "mg/dL",
        q(118.0, 28.0, 0, 142.0),
        "160184310",
        18,
        false
    ),
    lab!(
        "ＨＤＬコレステロール",
        "HDL-C",
        "3F070000002327101",
        "0000100104",
        "mg/dL",
        q(60.0, 14.0, 0, 50.0),
        "160019310",
        17,
        false
    ),
    lab!(
        "中性脂肪",
        "TG",
        "3F015000002327101",
        "0000100105",
        "mg/dL",
        q(110.0, 45.0, 0, 170.0),
        "160019210",
        11,
        false
    ),
    lab!("ＡＳＴ", "AST", "3B035000002327201", "0000100106", "U/L", q(22.0, 6.0, 0, 26.0), "160018010", 17, false),
    lab!("ＡＬＴ", "ALT", "3B045000002327201", "0000100107", "U/L", q(20.0, 8.0, 0, 28.0), "160018110", 17, false),
    lab!(
        "クレアチニン",
        "Cre",
        "3C015000002327101",
        "0000100108",
        "mg/dL",
        q(0.80, 0.16, 2, 1.65),
        "160019010",
        11,
        false
    ),
    lab!(
        "eGFR",
        "eGFR",
        "8A065000002391901",
        "0000181804",
        "ml/min/1.73m2",
        q(76.0, 13.0, 0, 38.0),
        "160019010",
        0,
        false
    ),
    lab!("カリウム", "K", "3H015000002326101", "0000181802", "mEq/L", q(4.2, 0.3, 1, 4.7), "160022410", 11, false),
    lab!("アルブミン", "ALB", "3A015000001827101", "0000181800", "g/dL", q(4.3, 0.3, 1, 3.7), "160017910", 11, false),
    lab!("白血球数", "WBC", "2A990000001930101", "0000100112", "10^3/uL", q(6.2, 1.4, 1, 10.5), "160008010", 21, false),
    lab!("ＣＲＰ", "CRP", "5C070000002306001", "0000100113", "mg/dL", q(0.08, 0.05, 2, 3.2), "160021610", 16, false),
    lab!(
        "インフルエンザウイルス抗原",
        "FluAg",
        "5F135143003105201",
        "0000100114",
        "",
        LabValue::Qualitative { positive_rate: 0.6 },
        "160153450",
        139,
        true
    ),
    lab!(
        "ＳＡＲＳ－ＣｏＶ－２抗原",
        "CoV2Ag",
        "5F625143003105201",
        "0000100115",
        "",
        LabValue::Qualitative { positive_rate: 0.5 },
        "160226810",
        300,
        true
    ),
    lab!(
        "ＨＢｓ抗原",
        "HBsAg",
        "5F016141002305911",
        "0000100116",
        "",
        LabValue::Qualitative { positive_rate: 0.008 },
        "160071710",
        29,
        true
    ),
    lab!(
        "ＨＣＶ抗体",
        "HCVAb",
        "5F360149002305911",
        "0000100117",
        "",
        LabValue::Qualitative { positive_rate: 0.01 },
        "160071810",
        102,
        true
    ),
    lab!(
        "梅毒ＴＰ抗体",
        "TPAb",
        "5E071149002305911",
        "0000100118",
        "",
        LabValue::Qualitative { positive_rate: 0.005 },
        "160063010",
        32,
        true
    ),
];

/// Checkup panel (indices into [`LABS`]).
pub const CHECKUP_LABS: &[usize] = &[0, 1, 2, 3, 4, 5, 6, 7, 8];
/// Pre-procedure infection screening panel.
pub const INFECTION_PANEL: &[usize] = &[15, 16, 17];
/// Dialysis series (heavy-tail persons).
pub const DIALYSIS_LABS: &[usize] = &[7, 8, 9, 10, 11, 12, 1, 5, 6, 2, 3, 4];

/// Receipt procedure codes (レセ電 診療行為, 9 digits). 111000110, 112007410 and 120002910 appear
/// in the receipt sample; the others are *illustrative*.
pub const PROC_FIRST_VISIT: (&str, u64) = ("111000110", 288);
pub const PROC_REVISIT: (&str, u64) = ("112007410", 73);
pub const PROC_OUTPATIENT_MGMT: (&str, u64) = ("112011310", 52);
pub const PROC_DISEASE_MGMT: (&str, u64) = ("113001810", 225);
pub const PROC_PRESCRIPTION_SLIP: (&str, u64) = ("120002910", 68);
pub const PROC_PRESCRIPTION_FEE: (&str, u64) = ("120001210", 42);
pub const PROC_BLOOD_DRAW: (&str, u64) = ("160095710", 37);
pub const PROC_DIALYSIS: (&str, u64) = ("140007310", 1885);

/// A medication or food allergen (code system, code, display). The medication code
/// GCM2260701F1ZZZ and the food codes are *fixture*; the others *illustrative*.
pub const MED_ALLERGENS: &[(&str, &str)] = &[
    ("GCM2260701F1ZZZ", "ポビドンヨード含嗽用液７％"),
    ("GCM6131001C1ZZZ", "アモキシシリン"),
    ("GCM6132005C1ZZZ", "セファクロル"),
    ("GCM1149019F1ZZZ", "ロキソプロフェンナトリウム"),
];
pub const FOOD_ALLERGENS: &[(&str, &str)] =
    &[("J9FC11310000", "さば"), ("J9FA32540000", "キウイフルーツ"), ("J9FE10000000", "鶏卵"), ("J9FB10000000", "小麦")];

/// Vaccines (YJ, display, target disease SNOMED code). *Illustrative* YJ codes.
pub const VACCINES: &[(&str, &str, &str)] = &[
    ("631340QA1026", "インフルエンザＨＡワクチン", "6142004"),
    ("631140JA1020", "２３価肺炎球菌莢膜ポリサッカライドワクチン", "16814004"),
];

/// 介護 service lines: service type, item, units per use, uses per month (mean), for 要支援 or 要介護.
pub const CARE_SERVICES_SUPPORT: &[(&str, &str, u64, f64)] = &[("65", "1111", 1798, 1.0), ("46", "1111", 442, 1.0)];
pub const CARE_SERVICES_CARE: &[(&str, &str, u64, f64)] = &[
    ("15", "1121", 655, 8.0),
    ("11", "1111", 244, 10.0),
    ("17", "1001", 110, 4.0),
    ("13", "1211", 471, 3.0),
    ("43", "1121", 1086, 1.0),
];

/// Care-level certification rate (percent) for 65-69, 70-74, 75-79, 80-84, 85-89, 90+ (after
/// 介護保険事業状況報告: roughly 3, 6, 12, 26, 48, 72).
pub const CARE_RATE: [f64; 6] = [3.0, 6.0, 12.0, 26.0, 48.0, 72.0];
/// Care levels and their weights (01 not used): 12/13 要支援1/2, 21-25 要介護1-5.
pub const CARE_LEVELS: &[(&str, u64)] =
    &[("12", 14), ("13", 14), ("21", 21), ("22", 17), ("23", 13), ("24", 12), ("25", 9)];

#[cfg(test)]
mod tests {
    use super::*;

    fn encodable(s: &str) -> bool {
        let (_, _, bad) = encoding_rs::SHIFT_JIS.encode(s);
        !bad
    }

    #[test]
    fn code_shapes_are_right() {
        for c in CHRONIC {
            assert_eq!(c.receipt.len(), 7, "{}", c.name);
            assert_eq!(c.medis.len(), 8, "{}", c.name);
            assert!(encodable(c.name));
        }
        for a in ACUTE {
            assert_eq!(a.receipt.len(), 7, "{}", a.name);
            assert!(encodable(a.name));
        }
        for d in DRUGS {
            assert_eq!(d.yj.len(), 12, "{}", d.name);
            assert_eq!(d.hot9.len(), 9, "{}", d.name);
            assert_eq!(d.receipt.len(), 9, "{}", d.name);
            assert!(encodable(d.name) && encodable(d.usage));
        }
        for l in LABS {
            assert_eq!(l.jlac10.len(), 17, "{}", l.name);
            assert_eq!(l.receipt.len(), 9, "{}", l.name);
        }
        for (k, g) in FAMILY_NAMES.iter().map(|(k, g)| (k, g)).chain(MALE_NAMES.iter().map(|(k, g, _)| (k, g))) {
            assert!(encodable(k) && encodable(g), "{k}");
        }
        for (k, g, _) in FEMALE_NAMES {
            assert!(encodable(k) && encodable(g), "{k}");
        }
        for p in PREFECTURES {
            assert!(encodable(p.name) && encodable(p.city));
        }
        assert_eq!(PREFECTURES.len(), 47);
    }
}
