//! Record layouts of the two receipt kinds this reader knows, as data: which record types a
//! receipt may contain, and the field positions that differ between the 医科 (medical) and the
//! 調剤 (pharmacy) 記録条件仕様 for record types they share.
//!
//! Positions are 0-based CSV columns, the record type being column 0 (so they equal the
//! specification's 項目番号 minus one). The 医科 positions follow yokenzan/receiptisan
//! (`record.rb`) and the real sample in `tests/data/receipts/`. The 調剤 positions were checked
//! against two independent public descriptions of the 記録条件仕様(調剤用) (docs/CLAIMS.md,
//! "Verified against what"): sosuke-hirayama/uke-parser `uke_parser_chozai.rb` (written from
//! the 支払基金 `jiki_t01.pdf`) and pharma-oss/pharma-oss
//! `src/lib/receipt/dispensing_uke_validation.ts` (the 令和8年6月版 specification, with rows of
//! the 支払基金 sample `phasample.zip` in its tests). Both agree on every position below.

/// Which 記録条件仕様 a file follows, told by its header record (IR or YK).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// 医科: header IR.
    Medical,
    /// 調剤: header YK.
    Pharmacy,
}

/// What differs between the layouts for the reader.
#[derive(Debug)]
pub struct Layout {
    /// The layout.
    pub kind: Kind,
    /// Header (IR/YK) 請求年月. IR has a 予備 field at 5 before the facility name, YK does not.
    pub header_billing_month: usize,
    /// RE カタカナ氏名 (kana name; feeds linkage ID2 only).
    pub re_kana_name: usize,
    /// Record types that may appear inside a receipt (after its RE), besides HO and KO.
    pub in_receipt: &'static [&'static str],
}

/// 医科: IR,審査支払機関,都道府県,点数表,医療機関コード,予備,名称,請求年月,…; RE kana at 36.
pub const MEDICAL: Layout = Layout {
    kind: Kind::Medical,
    header_billing_month: 7,
    re_kana_name: 36,
    in_receipt: &["SN", "JD", "MF", "SY", "SI", "IY", "TO", "CO", "SJ"],
};

/// 調剤: YK,審査支払機関,都道府県,点数表,薬局コード,名称,請求年月,マルチボリューム,電話番号;
/// RE: 1 レセプト番号, 2 種別, 3 調剤年月, 4 氏名, 5 男女区分, 6 生年月日, 7 給付割合,
/// 8 特記事項, 9–13 処方医療機関 (都道府県, 点数表, コード, 名称, 所在地), 14–33 保険医氏名,
/// 34 麻薬免許番号, 35 調剤録番号等, 36 予備, 37 検索番号, 38 記録条件仕様年月/予備,
/// 39 請求情報, 40 一部負担金区分, 41 カタカナ氏名.
pub const PHARMACY: Layout = Layout {
    kind: Kind::Pharmacy,
    header_billing_month: 6,
    re_kana_name: 41,
    in_receipt: &["SN", "JD", "MF", "SH", "CZ", "IY", "TO", "CO", "TK", "KI", "ST"],
};

/// Every record type that can belong to a receipt in either layout (a type outside both is
/// `unknown_record_type`; one of the other layout is `not_in_layout`).
pub const ANY_IN_RECEIPT: &[&str] =
    &["HO", "KO", "SN", "JD", "MF", "SY", "SI", "IY", "TO", "CO", "SJ", "SH", "CZ", "TK", "KI", "ST"];

impl Layout {
    /// The layout of a kind.
    pub fn of(kind: Kind) -> &'static Layout {
        match kind {
            Kind::Medical => &MEDICAL,
            Kind::Pharmacy => &PHARMACY,
        }
    }

    /// Whether `record_type` may appear inside a receipt of this layout.
    pub fn allows(&self, record_type: &str) -> bool {
        matches!(record_type, "HO" | "KO") || self.in_receipt.contains(&record_type)
    }
}

/// 調剤 SH 処方基本レコード: 1 処方No, 2 剤形コード, 3 用法コード, 4 特別指示 (free text, never
/// read), 5–9 単位薬剤料 (合計, 第一–第四公費).
pub mod sh {
    /// 処方No.
    pub const NUMBER: usize = 1;
    /// 剤形コード (1 内服, 2 内滴, 3 屯服, 4 注射, 5 外用, 6 浸煎, 7 湯, 9 材料).
    pub const DOSAGE_FORM: usize = 2;
    /// The 剤形コード values of the code table.
    pub const DOSAGE_FORMS: &[&str] = &["1", "2", "3", "4", "5", "6", "7", "9"];
    /// 剤形コード 内服 (oral): the only form whose 調剤数量 is read as days of supply.
    pub const ORAL: &str = "1";
}

/// 調剤 CZ 調剤情報レコード: 1 医師番号, 2 処方月日, 3 調剤月日, 4 処方箋受付回, 5 調剤数量,
/// 6–10 調剤料 (負担区分, 算定区分, 算定先No, コード, 点数), 11 分割区分, 12 前回までの数量,
/// 13 薬剤料点数, 14 予備, 15–44 加算料 ×10 (負担区分, コード, 点数), 45 一包化日数, …
pub mod cz {
    /// 処方月日 (YYYYMMDD): date the prescription was issued.
    pub const PRESCRIBED: usize = 2;
    /// 調剤月日 (YYYYMMDD): date dispensed.
    pub const DISPENSED: usize = 3;
    /// 調剤数量: days for 内服, otherwise doses or units.
    pub const QUANTITY: usize = 5;
}

/// 調剤 IY 医薬品レコード: 1 負担区分, 2 医薬品コード, 3 使用量, 4–5 予備, 6 混合区分コード,
/// 7 混合区分枝, 8 配合不適区分, 9 1回用量.
pub mod iy {
    /// 医薬品コード (9 digits).
    pub const CODE: usize = 2;
    /// 使用量.
    pub const QUANTITY: usize = 3;
}

/// 調剤 TO 特定器材レコード: 1 負担区分, 2 特定器材コード, 3 使用量, 4 単位コード, 5 単価,
/// 6 予備 (名称 in the 令和8年 specification; never read).
pub mod to {
    /// 特定器材コード (9 digits).
    pub const CODE: usize = 2;
    /// 使用量.
    pub const QUANTITY: usize = 3;
}
