//! The FHIRPath subset that SQL-on-FHIR v2 views need, parsed once into an AST and evaluated
//! directly over resources parsed onto a JSON tape ([`super::json`]; no copies of the
//! resource).
//!
//! Supported: path navigation (with choice types: `value` finds `valueQuantity`), indexers,
//! literals (string, number, boolean, `{}`, `@date`), `%constants`, `$this`, boolean logic
//! with three-valued semantics (`and`, `or`, `xor`, `implies`, `not()`), comparison
//! (`=`, `!=`, `~`, `!~`, `<`, `<=`, `>`, `>=`), arithmetic (`+ - * / div mod`), string
//! concatenation `&`, union `|`, `in`/`contains`, and the functions `where`, `select`,
//! `exists`, `empty`, `first`, `last`, `tail`, `skip`, `take`, `count`, `distinct`, `join`,
//! `ofType`, `is`, `as`, `extension`, `getResourceKey`, `getReferenceKey`, `lowBoundary`,
//! `highBoundary`, `not`, `toString`, `startsWith`, `endsWith`, `contains`, `hasValue`, `iif`.

use std::borrow::Cow;
use std::collections::HashMap;

use serde_json::Value;
use smallvec::{SmallVec, smallvec};

use super::json::{J, Kind, key_eq};

/// A FHIRPath parse or evaluation failure. Messages name the construct, never data values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathError(pub String);

impl std::fmt::Display for PathError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

type PResult<T> = Result<T, PathError>;

fn err<T>(msg: impl Into<String>) -> PResult<T> {
    Err(PathError(msg.into()))
}

/// A parsed FHIRPath expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// `$this` (also the implicit start of a path).
    This,
    /// A string literal.
    Str(String),
    /// An integer literal.
    Int(i64),
    /// A decimal literal (value, digits after the point).
    Dec(f64, u32),
    /// A boolean literal.
    Bool(bool),
    /// `{}`.
    Empty,
    /// A date/time literal `@2020-01-01`, kept as text.
    DateLit(String),
    /// `%name`.
    Const(String),
    /// `name` at the start of a path, or `.name` after `base`.
    Member(Box<Expr>, String),
    /// `base.fn(args)`, or `fn(args)` with `base` = `$this`.
    Call(Box<Expr>, Func, Vec<Expr>),
    /// `base[index]`.
    Index(Box<Expr>, Box<Expr>),
    /// Unary minus.
    Neg(Box<Expr>),
    /// Binary operator.
    Bin(BinOp, Box<Expr>, Box<Expr>),
    /// `x is T` / `x as T`.
    TypeOp(bool, Box<Expr>, String),
    /// A chain of member steps (with `ofType()` filters, and `first()`, `exists()` or `empty()`
    /// at the end) after `base`, fused from the `Member` and `Call` nodes the parser builds
    /// ([`fuse`]).
    Path(Box<Path>),
    /// `a & '|' & b`: a `&` chain of string literals and members of the focus, fused from
    /// the nested `Bin` nodes ([`fuse`]); see [`Join`].
    Join(Box<Join>),
    /// `member = 'text'` or `member != 'text'` on the focus, fused from the nested nodes
    /// ([`fuse`]); see [`Compare`].
    Compare(Box<Compare>),
    /// `iif(P.exists(), P, Q)` (or `iif(P.exists(), P)`, with `Q` = `{}`) on the focus:
    /// P's items, else Q's, fused from the call ([`fuse`]). `iif` without a base evaluates
    /// its criterion and its results on the same focus, so P's items decide both: P is
    /// evaluated once, and no call is dispatched (`select(iif(code.exists(), code, unit))`
    /// picks a Quantity's unit this way).
    Otherwise(Box<(Expr, Expr)>),
}

/// A fused comparison of a member of the focus with a string literal (`system = '…'`,
/// `status != 'entered-in-error'`). On one object whose member is a string or absent it is
/// decided from one look at the member; anything else evaluates `general`.
#[derive(Debug, Clone, PartialEq)]
pub struct Compare {
    /// The member.
    pub member: String,
    /// The literal.
    pub text: String,
    /// `!=` instead of `=`.
    pub not: bool,
    /// The comparison as parsed.
    pub general: Expr,
    /// Where the member is in the view's [`RootIndex`] (`u16::MAX`: not indexed), set by
    /// [`Expr::index_roots`]: on the resource itself (a view's `where` clause) the member is
    /// read from there instead of scanning the resource's members.
    pub root_slot: u16,
}

/// A fused `&` chain whose operands are string literals and single members of the focus
/// (`system & '|' & code`, the shape that turns codings and identifiers into keys). On one
/// object whose members are strings or absent it is built as one string from one look at
/// each member; anything else (several items, numbers, arrays, choice-type members, a member
/// named like the resource type) evaluates `general`, the nested nodes it was fused from.
#[derive(Debug, Clone, PartialEq)]
pub struct Join {
    /// The operands in order.
    pub parts: Vec<JoinPart>,
    /// The chain as parsed, for whatever the direct form does not cover.
    pub general: Expr,
}

/// One operand of a [`Join`].
#[derive(Debug, Clone, PartialEq)]
pub enum JoinPart {
    /// A string literal.
    Lit(String),
    /// A member of the focus.
    Member(String),
}

/// A fused path: `base.a.b.ofType(T).c[.first()|.exists()|.empty()]`, navigated depth-first in one pass per
/// input item, without a collection per step. It gives the same items in the same order as
/// the nested nodes it replaces (a tree walked depth-first keeps the order step by step).
#[derive(Debug, Clone, PartialEq)]
pub struct Path {
    /// Where the path starts (`$this` for a path at the start of an expression).
    pub base: Expr,
    /// The steps, in order.
    pub steps: Vec<Step>,
    /// What ends the path: its items, or `first()`, `exists()` or `empty()` (navigation
    /// stops at the first item).
    pub end: End,
    /// Where the first member is in the view's [`RootIndex`] (`u16::MAX`: not indexed), set by
    /// [`Expr::index_roots`].
    pub root_slot: u16,
}

/// What ends a fused [`Path`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The items reached.
    Items,
    /// `first()`: the first item reached.
    First,
    /// `exists()`: whether any item is reached.
    Exists,
    /// `empty()`: whether none is.
    Empty,
}

/// One step of a fused [`Path`].
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// `.name`: a member, its choice-type members, or the node itself when `name` is its
    /// resource type.
    Member(String),
    /// `.ofType(T)`.
    OfType(String),
}

/// A supported FHIRPath function, resolved when the expression is parsed (evaluation then
/// dispatches on this instead of comparing names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Func {
    /// `where()`
    Where,
    /// `select()`
    Select,
    /// `all()`
    All,
    /// `startsWith()`
    StartsWith,
    /// `endsWith()`
    EndsWith,
    /// `contains()`
    Contains,
    /// `skip()`
    Skip,
    /// `take()`
    Take,
    /// `extension()`
    Extension,
    /// `ofType()`
    OfType,
    /// `is()`
    Is,
    /// `as()`
    As,
    /// `exists()`
    Exists,
    /// `join()`
    Join,
    /// `getReferenceKey()`
    GetReferenceKey,
    /// `iif()`
    Iif,
    /// `empty()`
    Empty,
    /// `first()`
    First,
    /// `last()`
    Last,
    /// `tail()`
    Tail,
    /// `count()`
    Count,
    /// `distinct()`
    Distinct,
    /// `not()`
    Not,
    /// `getResourceKey()`
    GetResourceKey,
    /// `lowBoundary()`
    LowBoundary,
    /// `highBoundary()`
    HighBoundary,
    /// `toString()`
    ToString,
    /// `hasValue()`
    HasValue,
    /// `single()`
    Single,
    /// `toInteger()`
    ToInteger,
    /// `toDecimal()`
    ToDecimal,
    /// `allTrue()`
    AllTrue,
    /// `anyTrue()`
    AnyTrue,
}

/// Each function: name, fewest and most arguments; in the order of [`Func`]'s variants, so
/// that a function's row is `FUNCS[f as usize]`.
const FUNCS: [(Func, &str, usize, usize); 33] = [
    (Func::Where, "where", 1, 1),
    (Func::Select, "select", 1, 1),
    (Func::All, "all", 1, 1),
    (Func::StartsWith, "startsWith", 1, 1),
    (Func::EndsWith, "endsWith", 1, 1),
    (Func::Contains, "contains", 1, 1),
    (Func::Skip, "skip", 1, 1),
    (Func::Take, "take", 1, 1),
    (Func::Extension, "extension", 1, 1),
    (Func::OfType, "ofType", 1, 1),
    (Func::Is, "is", 1, 1),
    (Func::As, "as", 1, 1),
    (Func::Exists, "exists", 0, 1),
    (Func::Join, "join", 0, 1),
    (Func::GetReferenceKey, "getReferenceKey", 0, 1),
    (Func::Iif, "iif", 2, 3),
    (Func::Empty, "empty", 0, 0),
    (Func::First, "first", 0, 0),
    (Func::Last, "last", 0, 0),
    (Func::Tail, "tail", 0, 0),
    (Func::Count, "count", 0, 0),
    (Func::Distinct, "distinct", 0, 0),
    (Func::Not, "not", 0, 0),
    (Func::GetResourceKey, "getResourceKey", 0, 0),
    (Func::LowBoundary, "lowBoundary", 0, 0),
    (Func::HighBoundary, "highBoundary", 0, 0),
    (Func::ToString, "toString", 0, 0),
    (Func::HasValue, "hasValue", 0, 0),
    (Func::Single, "single", 0, 0),
    (Func::ToInteger, "toInteger", 0, 0),
    (Func::ToDecimal, "toDecimal", 0, 0),
    (Func::AllTrue, "allTrue", 0, 0),
    (Func::AnyTrue, "anyTrue", 0, 0),
];

impl Func {
    /// The function's FHIRPath name.
    pub fn name(self) -> &'static str {
        // A direct index, not a search: `call` takes the name on every evaluation.
        FUNCS[self as usize].1
    }
}

/// Binary operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    /// `*`
    Mul,
    /// `/`
    Div,
    /// `div`
    IntDiv,
    /// `mod`
    Mod,
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `&`
    Concat,
    /// `|`
    Union,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `=`
    Eq,
    /// `!=`
    Ne,
    /// `~`
    Equiv,
    /// `!~`
    NotEquiv,
    /// `in`
    In,
    /// `contains`
    Contains,
    /// `and`
    And,
    /// `or`
    Or,
    /// `xor`
    Xor,
    /// `implies`
    Implies,
}

// ---------------------------------------------------------------------------------------------
// Lexer

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Num(String),
    Date(String),
    Const(String),
    Dollar(String),
    Op(&'static str),
    LParen,
    RParen,
    LBracket,
    RBracket,
    LBrace,
    RBrace,
    Dot,
    Comma,
}

fn lex(src: &str) -> PResult<Vec<Tok>> {
    let chars: Vec<char> = src.chars().collect();
    let mut i = 0;
    let mut out = Vec::new();
    while i < chars.len() {
        let c = chars[i];
        match c {
            ' ' | '\t' | '\n' | '\r' => i += 1,
            '(' => {
                out.push(Tok::LParen);
                i += 1;
            }
            ')' => {
                out.push(Tok::RParen);
                i += 1;
            }
            '[' => {
                out.push(Tok::LBracket);
                i += 1;
            }
            ']' => {
                out.push(Tok::RBracket);
                i += 1;
            }
            '{' => {
                out.push(Tok::LBrace);
                i += 1;
            }
            '}' => {
                out.push(Tok::RBrace);
                i += 1;
            }
            '.' => {
                out.push(Tok::Dot);
                i += 1;
            }
            ',' => {
                out.push(Tok::Comma);
                i += 1;
            }
            '\'' | '`' => {
                let quote = c;
                let mut s = String::new();
                i += 1;
                loop {
                    let Some(&ch) = chars.get(i) else { return err("unterminated string literal") };
                    i += 1;
                    if ch == quote {
                        break;
                    }
                    if ch == '\\' {
                        let Some(&e) = chars.get(i) else { return err("unterminated escape") };
                        i += 1;
                        match e {
                            'n' => s.push('\n'),
                            't' => s.push('\t'),
                            'r' => s.push('\r'),
                            'f' => s.push('\u{c}'),
                            'u' => {
                                let hex: String = chars.get(i..i + 4).map(|h| h.iter().collect()).unwrap_or_default();
                                let code =
                                    u32::from_str_radix(&hex, 16).map_err(|_| PathError("bad \\u escape".into()))?;
                                s.push(char::from_u32(code).unwrap_or('\u{fffd}'));
                                i += 4;
                            }
                            other => s.push(other),
                        }
                    } else {
                        s.push(ch);
                    }
                }
                if quote == '`' {
                    out.push(Tok::Ident(s));
                } else {
                    out.push(Tok::Str(s));
                }
            }
            '%' | '$' => {
                i += 1;
                let start = i;
                if chars.get(i) == Some(&'`') || chars.get(i) == Some(&'\'') {
                    let q = chars[i];
                    i += 1;
                    let s0 = i;
                    while i < chars.len() && chars[i] != q {
                        i += 1;
                    }
                    let name: String = chars[s0..i].iter().collect();
                    i += 1;
                    out.push(if c == '%' { Tok::Const(name) } else { Tok::Dollar(name) });
                    continue;
                }
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
                if start == i {
                    return err(format!("`{c}` must be followed by a name"));
                }
                let name: String = chars[start..i].iter().collect();
                out.push(if c == '%' { Tok::Const(name) } else { Tok::Dollar(name) });
            }
            '@' => {
                i += 1;
                let start = i;
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric() || matches!(chars[i], '-' | ':' | '.' | '+' | 'T' | 'Z'))
                {
                    i += 1;
                }
                if start == i {
                    return err("`@` must start a date or time literal");
                }
                out.push(Tok::Date(chars[start..i].iter().collect()));
            }
            d if d.is_ascii_digit() => {
                let start = i;
                while i < chars.len() && chars[i].is_ascii_digit() {
                    i += 1;
                }
                if i + 1 < chars.len() && chars[i] == '.' && chars[i + 1].is_ascii_digit() {
                    i += 1;
                    while i < chars.len() && chars[i].is_ascii_digit() {
                        i += 1;
                    }
                }
                out.push(Tok::Num(chars[start..i].iter().collect()));
            }
            a if a.is_alphabetic() || a == '_' => {
                let start = i;
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
                out.push(Tok::Ident(chars[start..i].iter().collect()));
            }
            _ => {
                let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
                let op: &'static str = match two.as_str() {
                    "<=" => "<=",
                    ">=" => ">=",
                    "!=" => "!=",
                    "!~" => "!~",
                    _ => match c {
                        '+' => "+",
                        '-' => "-",
                        '*' => "*",
                        '/' => "/",
                        '&' => "&",
                        '|' => "|",
                        '<' => "<",
                        '>' => ">",
                        '=' => "=",
                        '~' => "~",
                        _ => return err(format!("unexpected character `{c}`")),
                    },
                };
                i += op.len();
                out.push(Tok::Op(op));
            }
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Parser (precedence climbing, lowest first: implies, or/xor, and, in/contains, =, <, |, +, *)

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn expect(&mut self, t: &Tok) -> PResult<()> {
        if self.peek() == Some(t) {
            self.pos += 1;
            Ok(())
        } else {
            err(format!("expected {t:?}"))
        }
    }

    fn binop(&self, level: u8) -> Option<BinOp> {
        let t = self.peek()?;
        let op = match (level, t) {
            (0, Tok::Ident(s)) if s == "implies" => BinOp::Implies,
            (1, Tok::Ident(s)) if s == "or" => BinOp::Or,
            (1, Tok::Ident(s)) if s == "xor" => BinOp::Xor,
            (2, Tok::Ident(s)) if s == "and" => BinOp::And,
            (3, Tok::Ident(s)) if s == "in" => BinOp::In,
            (3, Tok::Ident(s)) if s == "contains" => BinOp::Contains,
            (4, Tok::Op("=")) => BinOp::Eq,
            (4, Tok::Op("!=")) => BinOp::Ne,
            (4, Tok::Op("~")) => BinOp::Equiv,
            (4, Tok::Op("!~")) => BinOp::NotEquiv,
            (5, Tok::Op("<")) => BinOp::Lt,
            (5, Tok::Op("<=")) => BinOp::Le,
            (5, Tok::Op(">")) => BinOp::Gt,
            (5, Tok::Op(">=")) => BinOp::Ge,
            (6, Tok::Op("|")) => BinOp::Union,
            (7, Tok::Op("+")) => BinOp::Add,
            (7, Tok::Op("-")) => BinOp::Sub,
            (7, Tok::Op("&")) => BinOp::Concat,
            (8, Tok::Op("*")) => BinOp::Mul,
            (8, Tok::Op("/")) => BinOp::Div,
            (8, Tok::Ident(s)) if s == "div" => BinOp::IntDiv,
            (8, Tok::Ident(s)) if s == "mod" => BinOp::Mod,
            _ => return None,
        };
        Some(op)
    }

    fn expr(&mut self, level: u8) -> PResult<Expr> {
        if level > 8 {
            return self.type_expr();
        }
        let mut lhs = self.expr(level + 1)?;
        while let Some(op) = self.binop(level) {
            self.pos += 1;
            let rhs = self.expr(level + 1)?;
            lhs = Expr::Bin(op, Box::new(lhs), Box::new(rhs));
        }
        Ok(lhs)
    }

    fn type_expr(&mut self) -> PResult<Expr> {
        let mut e = self.unary()?;
        while let Some(Tok::Ident(s)) = self.peek() {
            let is = match s.as_str() {
                "is" => true,
                "as" => false,
                _ => break,
            };
            self.pos += 1;
            let ty = self.type_name()?;
            e = Expr::TypeOp(is, Box::new(e), ty);
        }
        Ok(e)
    }

    fn type_name(&mut self) -> PResult<String> {
        let Some(Tok::Ident(mut name)) = self.next() else { return err("expected a type name") };
        while self.peek() == Some(&Tok::Dot) {
            self.pos += 1;
            let Some(Tok::Ident(n)) = self.next() else { return err("expected a type name") };
            name = n;
        }
        Ok(name)
    }

    fn unary(&mut self) -> PResult<Expr> {
        match self.peek() {
            Some(Tok::Op("-")) => {
                self.pos += 1;
                Ok(Expr::Neg(Box::new(self.unary()?)))
            }
            Some(Tok::Op("+")) => {
                self.pos += 1;
                self.unary()
            }
            _ => self.postfix(),
        }
    }

    fn postfix(&mut self) -> PResult<Expr> {
        let mut e = self.term()?;
        loop {
            match self.peek() {
                Some(Tok::Dot) => {
                    self.pos += 1;
                    let Some(Tok::Ident(name)) = self.next() else { return err("expected a name after `.`") };
                    e = self.invocation(e, name)?;
                }
                Some(Tok::LBracket) => {
                    self.pos += 1;
                    let idx = self.expr(0)?;
                    self.expect(&Tok::RBracket)?;
                    e = Expr::Index(Box::new(e), Box::new(idx));
                }
                _ => return Ok(e),
            }
        }
    }

    fn invocation(&mut self, base: Expr, name: String) -> PResult<Expr> {
        if self.peek() == Some(&Tok::LParen) {
            self.pos += 1;
            let mut args = Vec::new();
            if self.peek() != Some(&Tok::RParen) {
                loop {
                    args.push(self.expr(0)?);
                    if self.peek() == Some(&Tok::Comma) {
                        self.pos += 1;
                    } else {
                        break;
                    }
                }
            }
            self.expect(&Tok::RParen)?;
            let f = check_function(&name, &args)?;
            Ok(Expr::Call(Box::new(base), f, args))
        } else {
            Ok(Expr::Member(Box::new(base), name))
        }
    }

    fn term(&mut self) -> PResult<Expr> {
        match self.next() {
            Some(Tok::Str(s)) => Ok(Expr::Str(s)),
            Some(Tok::Num(n)) => {
                if let Some((_, frac)) = n.split_once('.') {
                    let v: f64 = n.parse().map_err(|_| PathError("bad number literal".into()))?;
                    Ok(Expr::Dec(v, frac.len() as u32))
                } else {
                    Ok(Expr::Int(n.parse().map_err(|_| PathError("bad integer literal".into()))?))
                }
            }
            Some(Tok::Date(d)) => Ok(Expr::DateLit(d)),
            Some(Tok::Const(c)) => Ok(Expr::Const(c)),
            Some(Tok::Dollar(d)) => match d.as_str() {
                "this" => Ok(Expr::This),
                other => err(format!("unsupported variable `${other}`")),
            },
            Some(Tok::LParen) => {
                let e = self.expr(0)?;
                self.expect(&Tok::RParen)?;
                Ok(e)
            }
            Some(Tok::LBrace) => {
                self.expect(&Tok::RBrace)?;
                Ok(Expr::Empty)
            }
            Some(Tok::Ident(name)) => match name.as_str() {
                "true" => Ok(Expr::Bool(true)),
                "false" => Ok(Expr::Bool(false)),
                _ => self.invocation(Expr::This, name),
            },
            Some(t) => err(format!("unexpected token {t:?}")),
            None => err("unexpected end of expression"),
        }
    }
}

fn check_function(name: &str, args: &[Expr]) -> PResult<Func> {
    let Some(&(f, _, min, max)) = FUNCS.iter().find(|f| f.1 == name) else {
        return err(format!("unsupported function `{name}()`"));
    };
    if args.len() < min || args.len() > max {
        return err(format!("function `{name}()` takes {min} to {max} arguments"));
    }
    Ok(f)
}

/// Parse a FHIRPath expression (member chains fused into [`Expr::Path`]s).
pub fn parse(src: &str) -> PResult<Expr> {
    parse_nested(src).map(fuse)
}

/// Parse a FHIRPath expression into the parser's nested nodes, without [`fuse`].
fn parse_nested(src: &str) -> PResult<Expr> {
    let toks = lex(src)?;
    if toks.is_empty() {
        return err("empty expression");
    }
    let mut p = Parser { toks, pos: 0 };
    let e = p.expr(0)?;
    if p.pos < p.toks.len() {
        return err("unexpected trailing tokens");
    }
    Ok(e)
}

/// Fuse chains of members into [`Expr::Path`]s, everywhere in `e` but in type arguments
/// (`ofType(FHIR.Quantity)`, `getReferenceKey(Patient)` keep their `Member` form, which
/// [`type_arg`] reads).
fn fuse(e: Expr) -> Expr {
    let b = |e: Box<Expr>| Box::new(fuse(*e));
    match e {
        Expr::Member(base, name) => {
            let base = fuse(*base);
            match base {
                Expr::Path(mut p) if p.end == End::Items => {
                    p.steps.push(Step::Member(name));
                    Expr::Path(p)
                }
                base => Expr::Path(Box::new(Path {
                    base,
                    steps: vec![Step::Member(name)],
                    end: End::Items,
                    root_slot: u16::MAX,
                })),
            }
        }
        Expr::Call(base, f, args) => {
            let base = fuse(*base);
            match (base, f) {
                (Expr::Path(mut p), Func::OfType) if p.end == End::Items && type_arg(&args).is_ok() => {
                    let t = type_arg(&args).map(str::to_owned).unwrap_or_default();
                    p.steps.push(Step::OfType(t));
                    Expr::Path(p)
                }
                (Expr::Path(mut p), f @ (Func::First | Func::Exists | Func::Empty))
                    if p.end == End::Items && args.is_empty() =>
                {
                    p.end = match f {
                        Func::First => End::First,
                        Func::Exists => End::Exists,
                        _ => End::Empty,
                    };
                    Expr::Path(p)
                }
                // `X.where(c).exists()` is `X.exists(c)`, which stops at the first item for
                // which `c` is true, when `c` gives at most one boolean on any item and cannot
                // fail (so no later item's criterion could have raised an error).
                (Expr::Call(inner, Func::Where, criterion), Func::Exists)
                    if args.is_empty() && criterion.len() == 1 && single_boolean(&criterion[0]) =>
                {
                    Expr::Call(inner, Func::Exists, criterion)
                }
                (base, f) => {
                    // Functions whose argument is a type name read it with `type_arg`.
                    let typed = matches!(f, Func::OfType | Func::As | Func::Is | Func::GetReferenceKey);
                    let mut args: Vec<Expr> = if typed { args } else { args.into_iter().map(fuse).collect() };
                    if f == Func::Iif && base == Expr::This && exists_of(&args[0], &args[1]) {
                        let otherwise = if args.len() == 3 { args.pop().unwrap_or(Expr::Empty) } else { Expr::Empty };
                        let first = args.swap_remove(1);
                        return Expr::Otherwise(Box::new((first, otherwise)));
                    }
                    Expr::Call(Box::new(base), f, args)
                }
            }
        }
        Expr::Index(a, i) => Expr::Index(b(a), b(i)),
        Expr::Neg(a) => Expr::Neg(b(a)),
        Expr::Bin(op @ (BinOp::Eq | BinOp::Ne), x, y) => {
            let (x, y) = (b(x), b(y));
            let fused = match (focus_member(&x), &*y) {
                (Some(member), Expr::Str(text)) => Some((member.to_owned(), text.clone())),
                _ => None,
            };
            let general = Expr::Bin(op, x, y);
            match fused {
                Some((member, text)) => Expr::Compare(Box::new(Compare {
                    member,
                    text,
                    not: op == BinOp::Ne,
                    general,
                    root_slot: u16::MAX,
                })),
                None => general,
            }
        }
        Expr::Bin(op, x, y) => {
            let general = Expr::Bin(op, b(x), b(y));
            let mut parts = Vec::new();
            if op == BinOp::Concat
                && join_parts(&general, &mut parts)
                && parts.iter().any(|p| matches!(p, JoinPart::Member(_)))
            {
                Expr::Join(Box::new(Join { parts, general }))
            } else {
                general
            }
        }
        Expr::TypeOp(is, a, t) => Expr::TypeOp(is, b(a), t),
        other => other,
    }
}

/// Whether `e` gives at most one boolean on any focus and cannot fail: a fused comparison of
/// a member with a literal, a fused path from the focus ending with `exists()` or `empty()`,
/// or `and` / `or` of such.
fn single_boolean(e: &Expr) -> bool {
    match e {
        Expr::Compare(_) => true,
        Expr::Path(p) => p.base == Expr::This && matches!(p.end, End::Exists | End::Empty),
        Expr::Bin(BinOp::And | BinOp::Or, x, y) => single_boolean(x) && single_boolean(y),
        _ => false,
    }
}

/// Whether `criterion` is `P.exists()` and `result` is `P`, for one fused path `P`.
fn exists_of(criterion: &Expr, result: &Expr) -> bool {
    match (criterion, result) {
        (Expr::Path(c), Expr::Path(r)) => {
            c.end == End::Exists && r.end == End::Items && c.base == r.base && c.steps == r.steps
        }
        _ => false,
    }
}

/// The operands of a (fused) `&` chain, left to right, when each is a string literal or a
/// single member of the focus (a one-step path from `$this`, or a `Join` already fused).
fn join_parts(e: &Expr, out: &mut Vec<JoinPart>) -> bool {
    match e {
        Expr::Bin(BinOp::Concat, x, y) => join_parts(x, out) && join_parts(y, out),
        Expr::Join(j) => {
            out.extend(j.parts.iter().cloned());
            true
        }
        Expr::Str(l) => {
            out.push(JoinPart::Lit(l.clone()));
            true
        }
        e => match focus_member(e) {
            Some(n) => {
                out.push(JoinPart::Member(n.to_owned()));
                true
            }
            None => false,
        },
    }
}

/// The name when `e` is a single member of the focus: a one-step path from `$this`.
fn focus_member(e: &Expr) -> Option<&str> {
    match e {
        Expr::Path(p) if p.base == Expr::This && p.end == End::Items => match p.steps.as_slice() {
            [Step::Member(n)] => Some(n),
            _ => None,
        },
        _ => None,
    }
}

impl Expr {
    /// Call `f` on the expression and on every expression under it, parents first.
    pub fn visit_mut(&mut self, f: &mut dyn FnMut(&mut Expr)) {
        f(self);
        match self {
            Expr::Path(p) => p.base.visit_mut(f),
            Expr::Join(j) => j.general.visit_mut(f),
            Expr::Compare(c) => c.general.visit_mut(f),
            Expr::Otherwise(o) => {
                o.0.visit_mut(f);
                o.1.visit_mut(f);
            }
            Expr::Member(b, _) | Expr::Neg(b) | Expr::TypeOp(_, b, _) => b.visit_mut(f),
            Expr::Call(b, _, args) => {
                b.visit_mut(f);
                for a in args {
                    a.visit_mut(f);
                }
            }
            Expr::Index(a, b) | Expr::Bin(_, a, b) => {
                a.visit_mut(f);
                b.visit_mut(f);
            }
            _ => {}
        }
    }

    /// The first member name of every path in the expression (the names a path may look up
    /// on the resource itself, which [`RootIndex`] answers without a scan).
    pub fn root_names(&mut self, out: &mut Vec<String>) {
        self.visit_mut(&mut |e| match e {
            Expr::Path(p) => out.extend(p.steps.first().and_then(Step::member).map(str::to_owned)),
            Expr::Member(_, n) => out.push(n.clone()),
            _ => {}
        });
    }

    /// Point each path's first member at its slot in `names` (see [`Path::root_slot`]).
    pub fn index_roots(&mut self, names: &RootNames) {
        self.visit_mut(&mut |e| match e {
            Expr::Path(p) => {
                if let Some(n) = p.steps.first().and_then(Step::member) {
                    p.root_slot = names.slot_of(n);
                }
            }
            Expr::Compare(c) => c.root_slot = names.slot_of(&c.member),
            _ => {}
        });
    }

    /// Every `%name` the expression uses.
    pub fn constants(&mut self, out: &mut Vec<String>) {
        self.visit_mut(&mut |e| {
            if let Expr::Const(c) = e {
                out.push(c.clone());
            }
        });
    }
}

impl Step {
    /// The member name of a `.name` step.
    fn member(&self) -> Option<&str> {
        match self {
            Step::Member(n) => Some(n),
            Step::OfType(_) => None,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Evaluation

/// One item of a FHIRPath collection.
#[derive(Debug, Clone, PartialEq)]
pub enum Item<'a> {
    /// A node of the resource, with the FHIR type when a choice suffix tells it (`Quantity`,
    /// `DateTime`, `string`, …).
    Node(J<'a>, Option<&'a str>),
    /// A view constant, with its declared FHIR type (`code`, `date`, `integer`, …).
    Const(&'a Const, &'a str),
    /// A string: computed, or a literal of the expression (borrowed).
    Str(Cow<'a, str>),
    /// A computed integer.
    Int(i64),
    /// A computed decimal.
    Dec(f64),
    /// A computed boolean.
    Bool(bool),
    /// A computed date, dateTime or time (text, with its kind).
    Temporal(String, TemporalKind),
}

/// Kinds of temporal values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TemporalKind {
    /// `date`
    Date,
    /// `dateTime` / `instant`
    DateTime,
    /// `time`
    Time,
}

/// The value of a view constant (`constant.value[x]`: always a primitive).
#[derive(Debug, Clone, PartialEq)]
pub enum Const {
    /// A string-like value (string, code, uri, date, dateTime, …).
    Str(String),
    /// An integer.
    Int(i64),
    /// A decimal.
    Dec(f64),
    /// A boolean.
    Bool(bool),
}

impl Const {
    /// The constant of a JSON value; `None` for null, arrays and objects.
    pub fn from_json(v: &Value) -> Option<Const> {
        match v {
            Value::String(s) => Some(Const::Str(s.clone())),
            Value::Bool(b) => Some(Const::Bool(*b)),
            Value::Number(n) => Some(n.as_i64().map_or_else(|| Const::Dec(n.as_f64().unwrap_or(f64::NAN)), Const::Int)),
            _ => None,
        }
    }
}

/// A primitive view of an item, for comparison and arithmetic.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Prim<'x> {
    Bool(bool),
    Int(i64),
    Dec(f64),
    Str(&'x str),
    Complex,
}

impl<'a> Item<'a> {
    #[inline]
    fn prim(&self) -> Prim<'_> {
        match self {
            Item::Node(v, _) => match v.kind() {
                Kind::Bool(b) => Prim::Bool(b),
                Kind::Int(i) => Prim::Int(i),
                Kind::Dec(d) => Prim::Dec(d),
                Kind::Str(s) => Prim::Str(s),
                Kind::Null | Kind::Array | Kind::Object => Prim::Complex,
            },
            Item::Const(c, _) => match c {
                Const::Str(s) => Prim::Str(s),
                Const::Int(i) => Prim::Int(*i),
                Const::Dec(d) => Prim::Dec(*d),
                Const::Bool(b) => Prim::Bool(*b),
            },
            Item::Str(s) => Prim::Str(s),
            Item::Temporal(s, _) => Prim::Str(s),
            Item::Int(i) => Prim::Int(*i),
            Item::Dec(d) => Prim::Dec(*d),
            Item::Bool(b) => Prim::Bool(*b),
        }
    }

    /// The item as a string, where it is one.
    pub fn as_str(&self) -> Option<&str> {
        match self.prim() {
            Prim::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The item as JSON (for output).
    pub fn to_json(&self) -> Value {
        match self {
            Item::Node(v, _) => v.to_value(),
            Item::Const(c, _) => match c {
                Const::Str(s) => Value::String(s.clone()),
                Const::Int(i) => Value::from(*i),
                Const::Dec(d) => serde_json::Number::from_f64(*d).map_or(Value::Null, Value::Number),
                Const::Bool(b) => Value::Bool(*b),
            },
            Item::Str(s) => Value::String(s.to_string()),
            Item::Temporal(s, _) => Value::String(s.clone()),
            Item::Int(i) => Value::from(*i),
            Item::Dec(d) => serde_json::Number::from_f64(*d).map_or(Value::Null, Value::Number),
            Item::Bool(b) => Value::Bool(*b),
        }
    }

    #[inline]
    fn type_name(&self) -> Option<&str> {
        match self {
            Item::Node(_, t) => *t,
            Item::Const(_, t) => Some(t),
            _ => None,
        }
    }
}

/// The member names a view's paths may look up on the resource itself, in a small
/// open-addressing table, so that a resource's members are matched against all of them in
/// one pass ([`RootIndex::build`]) instead of one scan of the members per path.
#[derive(Debug, Clone, Default)]
pub struct RootNames {
    names: Vec<String>,
    /// Slot of each table position (`u16::MAX`: empty); the length is a power of two.
    table: Vec<u16>,
    /// Bit `n` set when a name is `n` bytes long (bit 63: 63 or more), so that most keys are
    /// ruled out before they are hashed.
    lengths: u64,
}

#[inline]
fn length_bit(n: usize) -> u64 {
    1u64 << n.min(63)
}

/// A table position of a name: its length and three of its bytes, mixed by a multiplication
/// whose top `bits` bits are taken (the low bits of a product only see the low bits of the
/// input).
#[inline]
fn name_slot(k: &[u8], bits: u32) -> usize {
    let n = k.len();
    if n == 0 {
        return 0;
    }
    let x = (n as u32) | (u32::from(k[0]) << 8) | (u32::from(k[n - 1]) << 16) | (u32::from(k[n / 2]) << 24);
    (x.wrapping_mul(0x9E37_79B9) >> (32 - bits)) as usize
}

impl RootNames {
    /// The table of `names`: each name's slot is its position among the distinct names, in
    /// the order given (a repeat keeps the first one's slot).
    pub fn new(names: Vec<String>) -> RootNames {
        let size = (names.len().min(usize::from(u16::MAX) - 1) * 4).next_power_of_two().max(8);
        let mut t = RootNames { names: Vec::new(), table: vec![u16::MAX; size], lengths: 0 };
        for n in names {
            if t.names.len() == usize::from(u16::MAX) - 1 {
                break;
            }
            t.lengths |= length_bit(n.len());
            if t.find(&n).is_some() {
                continue;
            }
            let mut at = name_slot(n.as_bytes(), size.trailing_zeros());
            while t.table[at] != u16::MAX {
                at = (at + 1) & (size - 1);
            }
            t.table[at] = t.names.len() as u16;
            t.names.push(n);
        }
        t
    }

    /// The slot of `name` as a path or comparison holds it (`u16::MAX`: not one of the names).
    fn slot_of(&self, name: &str) -> u16 {
        self.find(name).map_or(u16::MAX, |s| s as u16)
    }

    /// The slot of `key`, if it is one of the names.
    #[inline]
    pub fn find(&self, key: &str) -> Option<usize> {
        if self.lengths & length_bit(key.len()) == 0 {
            return None;
        }
        let mask = self.table.len() - 1;
        let mut at = name_slot(key.as_bytes(), self.table.len().trailing_zeros());
        loop {
            let slot = self.table[at];
            if slot == u16::MAX {
                return None;
            }
            if key_eq(&self.names[usize::from(slot)], key) {
                return Some(usize::from(slot));
            }
            at = (at + 1) & mask;
        }
    }
}

/// What one name finds on the resource: the member itself (the last one if repeated), and
/// its choice-type members (`value` → `valueQuantity`): the first one and how many.
#[derive(Debug, Clone, Copy, Default)]
struct RootSlot<'a> {
    exact: Option<J<'a>>,
    choice: Option<(J<'a>, &'a str)>,
    choices: u32,
}

/// The resource's members under each of a view's [`RootNames`], from one pass over them.
/// Paths that start on the resource itself take their first step from here; it finds what
/// [`lookup`] would.
#[derive(Debug)]
pub struct RootIndex<'a> {
    resource: J<'a>,
    resource_type: Option<&'a str>,
    id: Option<&'a str>,
    /// The slots of up to [`INLINE_SLOTS`] names (no allocation per resource), else `heap`.
    inline: [RootSlot<'a>; INLINE_SLOTS],
    heap: Vec<RootSlot<'a>>,
}

const INLINE_SLOTS: usize = 24;

impl<'a> RootIndex<'a> {
    /// The `resourceType` of the indexed resource.
    pub fn resource_type(&self) -> Option<&'a str> {
        self.resource_type
    }

    /// Index `resource` (an object) under `names`.
    #[inline]
    pub fn build(resource: J<'a>, names: &RootNames) -> RootIndex<'a> {
        let n = names.names.len();
        // Filled where it stands: an array built apart and moved into the index was copied
        // (1.3 kB a resource).
        let mut ix = RootIndex {
            resource,
            resource_type: None,
            id: None,
            inline: [RootSlot::default(); INLINE_SLOTS],
            heap: if n > INLINE_SLOTS { vec![RootSlot::default(); n] } else { Vec::new() },
        };
        let slots = if n > INLINE_SLOTS { &mut ix.heap[..] } else { &mut ix.inline[..n] };
        for (k, x) in resource.members() {
            if let Some(s) = names.find(k) {
                slots[s].exact = Some(x);
            }
            if key_eq(k, "resourceType") {
                ix.resource_type = x.as_str();
            } else if key_eq(k, "id") {
                ix.id = x.as_str();
            }
            // A choice-type member of `name` is `name` followed by an upper-case letter (only
            // the lengths of names are candidates).
            let mut short = names.lengths & (length_bit(k.len()) - 1) & !1 & !(1 << 63);
            let short = std::iter::from_fn(|| {
                let p = (short != 0).then(|| short.trailing_zeros() as usize)?;
                short &= short - 1;
                Some(p)
            });
            let long = if names.lengths & (1 << 63) != 0 { 63..k.len() } else { 0..0 };
            for p in short.chain(long) {
                if k.as_bytes()[p].is_ascii_uppercase()
                    && let Some(s) = names.find(&k[..p])
                {
                    let slot = &mut slots[s];
                    if slot.choices == 0 {
                        slot.choice = Some((x, &k[p..]));
                    }
                    slot.choices += 1;
                }
            }
        }
        ix
    }

    /// The slot at `slot` (`None` when it is not this index's).
    #[inline]
    fn slot(&self, slot: u16) -> Option<&RootSlot<'a>> {
        let slots = if self.heap.is_empty() { &self.inline[..] } else { &self.heap[..] };
        slots.get(usize::from(slot))
    }

    /// [`member_text`] of the resource for the member `name` at `slot`, from the index (`None`
    /// also when the slot is not this index's).
    #[inline]
    fn member_text(&self, slot: u16, name: &str) -> Option<Option<&'a str>> {
        let slot = self.slot(slot)?;
        let l = Lookup { exact: slot.exact, choice: slot.choices > 0, resource_type: self.resource_type };
        l.text(name)
    }

    /// [`walk`] from the resource itself along `name` (at `slot`) then `rest`; `None` when
    /// the slot is not this index's.
    #[inline]
    fn walk(
        &self,
        it: &Item<'a>,
        slot: u16,
        name: &str,
        rest: &'a [Step],
        out: &mut Coll<'a>,
        limit: usize,
    ) -> Option<bool> {
        let slot = *self.slot(slot)?;
        Some(if let Some(x) = slot.exact {
            walk_value(x, None, rest, out, limit)
        } else if self.resource_type == Some(name) {
            walk(it, rest, out, limit)
        } else if slot.choices == 1 {
            slot.choice.is_some_and(|(x, ty)| walk_value(x, Some(ty), rest, out, limit))
        } else if slot.choices > 1 {
            walk_choices(self.resource, name, rest, out, limit)
        } else {
            false
        })
    }
}

/// Evaluation context: the resource, constants, `%rowIndex`, and reference aliases.
#[derive(Debug, Clone, Copy)]
pub struct Ctx<'a> {
    /// The resource being evaluated.
    pub resource: J<'a>,
    /// Declared constants: name → (value, FHIR type).
    pub constants: &'a HashMap<String, (Const, String)>,
    /// `%rowIndex` of the innermost iteration.
    pub row_index: i64,
    /// Aliases of reference strings (e.g. `urn:uuid:` fullUrls) to resource keys `Type/id`.
    pub aliases: Option<&'a HashMap<String, String>>,
    /// Key of the resource when it has no id (e.g. its fullUrl).
    pub resource_key: Option<&'a str>,
    /// The resource's members under the view's root names, when the view built one.
    pub root: Option<&'a RootIndex<'a>>,
}

/// A FHIRPath collection.
pub type Coll<'a> = SmallVec<[Item<'a>; 2]>;

#[inline]
fn push_json<'a>(out: &mut Coll<'a>, v: J<'a>, ty: Option<&'a str>) {
    match v.kind() {
        Kind::Array => out.extend(v.elements().filter(|x| !x.is_null()).map(|x| Item::Node(x, ty))),
        Kind::Null => {}
        _ => out.push(Item::Node(v, ty)),
    }
}

/// What an object holds under `name`, from one pass over its members: the exact member (the
/// last one if repeated), whether choice-type members (`value` → `valueQuantity`, …) exist,
/// and the object's `resourceType`.
struct Lookup<'a> {
    exact: Option<J<'a>>,
    choice: bool,
    resource_type: Option<&'a str>,
}

impl<'a> Lookup<'a> {
    /// What [`member_text`] gives for the member `name` so found.
    #[inline]
    fn text(&self, name: &str) -> Option<Option<&'a str>> {
        match self.exact.map(J::kind) {
            Some(Kind::Str(s)) => Some(Some(s)),
            Some(Kind::Null) => Some(None),
            Some(_) => None,
            None if self.choice || self.resource_type == Some(name) => None,
            None => Some(None),
        }
    }
}

#[inline]
fn lookup<'a>(v: J<'a>, name: &str) -> Lookup<'a> {
    let mut l = Lookup { exact: None, choice: false, resource_type: None };
    for (k, x) in v.members() {
        if key_eq(k, name) {
            l.exact = Some(x);
        } else if choice_suffix(k, name).is_some() {
            l.choice = true;
        } else if key_eq(k, "resourceType") {
            l.resource_type = x.as_str();
        }
    }
    l
}

#[inline]
fn member<'a>(input: &[Item<'a>], name: &str, out: &mut Coll<'a>) {
    for it in input {
        let Item::Node(v, _) = *it else { continue };
        if !v.is_object() {
            continue;
        }
        // The exact name, else the resource itself when `name` is its type, else the
        // choice-type members in input order.
        let l = lookup(v, name);
        if let Some(x) = l.exact {
            push_json(out, x, None);
        } else if l.resource_type == Some(name) {
            out.push(it.clone());
        } else if l.choice {
            for (k, x) in v.members() {
                if let Some(ty) = choice_suffix(k, name) {
                    push_json(out, x, Some(ty));
                }
            }
        }
    }
}

/// The type suffix when `key` is a choice-type member of `name` (`valueQuantity` of `value`
/// → `Quantity`).
#[inline]
fn choice_suffix<'k>(key: &'k str, name: &str) -> Option<&'k str> {
    // The first byte inline before the prefix comparison, as in `key_eq`.
    if key.len() <= name.len() || key.as_bytes().first() != name.as_bytes().first() {
        return None;
    }
    let rest = key.strip_prefix(name)?;
    rest.as_bytes().first().is_some_and(u8::is_ascii_uppercase).then_some(rest)
}

/// `a.eq_ignore_ascii_case(b)`, deciding the usual cases without a loop over the bytes: a
/// choice suffix and a type name differ in the case of their first letter at most
/// (`DateTime`, `dateTime`), and other names in their length or first letter.
#[inline]
fn type_name_eq(a: &str, b: &str) -> bool {
    match (a.as_bytes().split_first(), b.as_bytes().split_first()) {
        (Some((x, a1)), Some((y, b1))) => {
            a1.len() == b1.len() && x.eq_ignore_ascii_case(y) && (a1 == b1 || a1.eq_ignore_ascii_case(b1))
        }
        (None, None) => true,
        _ => false,
    }
}

fn type_matches(item: &Item<'_>, ty: &str) -> bool {
    let eq = type_name_eq;
    if let Some(t) = item.type_name() {
        return eq(t, ty);
    }
    match item {
        Item::Node(v, _) => match v.kind() {
            Kind::Str(_) => matches!(
                ty,
                "string"
                    | "code"
                    | "id"
                    | "uri"
                    | "url"
                    | "canonical"
                    | "markdown"
                    | "oid"
                    | "uuid"
                    | "base64Binary"
                    | "date"
                    | "dateTime"
                    | "time"
                    | "instant"
                    | "String"
            ),
            Kind::Bool(_) => eq(ty, "boolean"),
            Kind::Int(_) => {
                matches!(ty, "integer" | "positiveInt" | "unsignedInt" | "decimal" | "Integer" | "Decimal")
            }
            Kind::Dec(_) if v.is_unsigned_integer() => {
                matches!(ty, "integer" | "positiveInt" | "unsignedInt" | "decimal" | "Integer" | "Decimal")
            }
            Kind::Dec(_) => eq(ty, "decimal"),
            Kind::Object => match v.str_of("resourceType") {
                Some(rt) => rt == ty || ty == "Resource" || ty == "DomainResource",
                None => ty.chars().next().is_some_and(|c| c.is_ascii_uppercase()),
            },
            Kind::Null | Kind::Array => false,
        },
        // A constant always has its declared type (handled above).
        Item::Const(..) => false,
        Item::Str(_) => eq(ty, "string"),
        Item::Int(_) => eq(ty, "integer"),
        Item::Dec(_) => eq(ty, "decimal"),
        Item::Bool(_) => eq(ty, "boolean"),
        Item::Temporal(_, k) => match k {
            TemporalKind::Date => eq(ty, "date"),
            TemporalKind::DateTime => eq(ty, "dateTime"),
            TemporalKind::Time => eq(ty, "time"),
        },
    }
}

fn type_arg(args: &[Expr]) -> PResult<&str> {
    match args.first() {
        Some(Expr::Member(b, n)) => match b.as_ref() {
            Expr::This => Ok(n),
            Expr::Member(_, _) => Ok(n), // FHIR.Quantity, System.String
            _ => err("expected a type name"),
        },
        Some(Expr::Str(s)) => Ok(s),
        _ => err("expected a type name"),
    }
}

/// Singleton boolean evaluation: `Ok(None)` for empty.
fn to_bool(c: &[Item<'_>]) -> PResult<Option<bool>> {
    match c {
        [] => Ok(None),
        [one] => match one.prim() {
            Prim::Bool(b) => Ok(Some(b)),
            _ => Ok(Some(true)), // a single non-boolean item counts as true
        },
        _ => err("expected a single boolean, found a collection"),
    }
}

/// Strict boolean check (for view `where` clauses): the value must be a boolean or empty.
pub fn strict_bool(c: &[Item<'_>]) -> PResult<Option<bool>> {
    match c {
        [] => Ok(None),
        [one] => match one.prim() {
            Prim::Bool(b) => Ok(Some(b)),
            _ => err("where path does not evaluate to a boolean"),
        },
        _ => err("where path evaluates to more than one value"),
    }
}

fn num(p: &Prim<'_>) -> Option<f64> {
    match p {
        Prim::Int(i) => Some(*i as f64),
        Prim::Dec(d) => Some(*d),
        _ => None,
    }
}

fn prim_eq(a: &Item<'_>, b: &Item<'_>) -> Option<bool> {
    let (pa, pb) = (a.prim(), b.prim());
    match (&pa, &pb) {
        (Prim::Complex, Prim::Complex) => Some(a.to_json() == b.to_json()),
        (Prim::Str(x), Prim::Str(y)) => {
            // Date/time values of different precision are not comparable.
            let temporal = |i: &Item<'_>| {
                matches!(i, Item::Temporal(..))
                    || matches!(i.type_name(), Some(t) if matches!(t.to_ascii_lowercase().as_str(), "date" | "datetime" | "instant" | "time"))
            };
            if temporal(a) && temporal(b) && x.len() != y.len() && !(x.len() >= 19 && y.len() >= 19) {
                return None;
            }
            Some(x == y)
        }
        (Prim::Bool(x), Prim::Bool(y)) => Some(x == y),
        _ => match (num(&pa), num(&pb)) {
            (Some(x), Some(y)) => Some((x - y).abs() < 1e-12),
            _ => Some(false),
        },
    }
}

fn coll_eq(a: &[Item<'_>], b: &[Item<'_>]) -> Option<bool> {
    if a.is_empty() || b.is_empty() {
        return None;
    }
    if a.len() != b.len() {
        return Some(false);
    }
    let mut all = true;
    for (x, y) in a.iter().zip(b) {
        match prim_eq(x, y) {
            Some(true) => {}
            Some(false) => all = false,
            None => return None,
        }
    }
    Some(all)
}

fn equiv(a: &[Item<'_>], b: &[Item<'_>]) -> bool {
    if a.is_empty() && b.is_empty() {
        return true;
    }
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).all(|(x, y)| match (x.prim(), y.prim()) {
        (Prim::Str(s), Prim::Str(t)) => {
            s.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase()
                == t.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase()
        }
        _ => prim_eq(x, y) == Some(true),
    })
}

fn single<'b, 'a>(c: &'b [Item<'a>], what: &str) -> PResult<Option<&'b Item<'a>>> {
    match c {
        [] => Ok(None),
        [one] => Ok(Some(one)),
        _ => err(format!("{what}: expected a single value, found a collection")),
    }
}

fn decimals_of(item: &Item<'_>) -> u32 {
    match item {
        Item::Node(_, _) | Item::Const(..) => match item.prim() {
            Prim::Dec(d) => {
                let s = serde_json::Number::from_f64(d).map(|n| n.to_string()).unwrap_or_default();
                s.split_once('.').map_or(0, |(_, f)| f.trim_end_matches(|c: char| !c.is_ascii_digit()).len() as u32)
            }
            _ => 0,
        },
        _ => 0,
    }
}

fn temporal_kind(item: &Item<'_>) -> Option<TemporalKind> {
    if let Item::Temporal(_, k) = item {
        return Some(*k);
    }
    let s = item.as_str()?;
    match item.type_name().map(str::to_ascii_lowercase).as_deref() {
        Some("date") => return Some(TemporalKind::Date),
        Some("datetime" | "instant") => return Some(TemporalKind::DateTime),
        Some("time") => return Some(TemporalKind::Time),
        Some(_) => return None,
        None => {}
    }
    let b = s.as_bytes();
    if b.len() >= 4 && b[..4].iter().all(u8::is_ascii_digit) && (b.len() == 4 || b[4] == b'-') {
        Some(if s.contains('T') { TemporalKind::DateTime } else { TemporalKind::Date })
    } else if b.len() >= 5 && b[2] == b':' {
        Some(TemporalKind::Time)
    } else {
        None
    }
}

fn days_in_month(y: i32, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ => {
            if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 {
                29
            } else {
                28
            }
        }
    }
}

fn date_boundary(s: &str, high: bool) -> Option<String> {
    let mut parts = s.split('-');
    let y: i32 = parts.next()?.parse().ok()?;
    let m: Option<u32> = parts.next().map(str::parse).transpose().ok()?;
    let d: Option<u32> = parts.next().map(str::parse).transpose().ok()?;
    let (m, d) = match (m, d, high) {
        (None, _, false) => (1, 1),
        (None, _, true) => (12, 31),
        (Some(m), None, false) => (m, 1),
        (Some(m), None, true) => (m, days_in_month(y, m)),
        (Some(m), Some(d), _) => (m, d),
    };
    Some(format!("{y:04}-{m:02}-{d:02}"))
}

fn time_boundary(t: &str, high: bool) -> Option<String> {
    let (hms, frac) = match t.split_once('.') {
        Some((a, f)) => (a, Some(f)),
        None => (t, None),
    };
    let mut p = hms.split(':');
    let h = p.next()?;
    let mi = p.next().unwrap_or(if high { "59" } else { "00" });
    let sec = p.next().unwrap_or(if high { "59" } else { "00" });
    let ms = match frac {
        Some(f) => format!("{:0<3}", f.chars().take(3).collect::<String>()),
        None => (if high { "999" } else { "000" }).to_owned(),
    };
    Some(format!("{h}:{mi}:{sec}.{ms}"))
}

fn boundary<'a>(item: &Item<'a>, high: bool) -> Option<Item<'a>> {
    if let Some(kind) = temporal_kind(item) {
        let s = item.as_str()?;
        return match kind {
            TemporalKind::Date => date_boundary(s, high).map(|d| Item::Temporal(d, TemporalKind::Date)),
            TemporalKind::Time => time_boundary(s, high).map(|t| Item::Temporal(t, TemporalKind::Time)),
            TemporalKind::DateTime => {
                let (date, rest) = s.split_once('T').unwrap_or((s, ""));
                let date = date_boundary(date, high)?;
                let tz_at = rest.find(['Z', '+', '-']);
                let (time, tz) = match tz_at {
                    Some(i) => (&rest[..i], &rest[i..]),
                    None => (rest, ""),
                };
                let time = if time.is_empty() {
                    (if high { "23:59:59.999" } else { "00:00:00.000" }).to_owned()
                } else {
                    time_boundary(time, high)?
                };
                let tz = if tz.is_empty() { if high { "-12:00" } else { "+14:00" } } else { tz };
                Some(Item::Temporal(format!("{date}T{time}{tz}"), TemporalKind::DateTime))
            }
        };
    }
    match item.prim() {
        Prim::Int(_) | Prim::Dec(_) => {
            let v = num(&item.prim())?;
            let p = decimals_of(item);
            let half = 5.0 * 10f64.powi(-(p as i32 + 1));
            let r = if high { v + half } else { v - half };
            let scale = 10f64.powi(p as i32 + 1);
            Some(Item::Dec((r * scale).round() / scale))
        }
        _ => None,
    }
}

fn reference_key(reference: &str, ctx: &Ctx<'_>) -> String {
    if let Some(k) = ctx.aliases.and_then(|a| a.get(reference)) {
        return k.clone();
    }
    if let Some(local) = reference.strip_prefix('#') {
        let base = resource_key(ctx.resource, ctx).unwrap_or_default();
        return join3(&base, "#", local);
    }
    reference_key_plain(reference)
}

/// The key `Type/id` of a relative or absolute reference (`_history` dropped); other
/// references (`urn:uuid:…`) are their own key.
pub fn reference_key_plain(reference: &str) -> String {
    match reference_parts(reference) {
        Ok((ty, id)) => join3(ty, "/", id),
        Err(whole) => whole.to_owned(),
    }
}

/// The type of [`reference_key_plain`]'s key (what comes before its first `/`), without
/// building the key.
pub fn reference_type_plain(reference: &str) -> &str {
    match reference_parts(reference) {
        Ok((ty, _)) => ty,
        Err(whole) => whole.split('/').next().unwrap_or_default(),
    }
}

/// A reference without its `/_history/…` as `(type, id)` (its last two segments), or whole
/// when it is a `urn:` or has a single segment: what [`reference_key_plain`] builds its key of.
fn reference_parts(reference: &str) -> Result<(&str, &str), &str> {
    let r = match history_at(reference) {
        Some(i) => &reference[..i],
        None => reference,
    };
    if r.starts_with("urn:") {
        return Err(r);
    }
    // `Type/id` is the last two segments (`rsplit('/')`), found with two reverse searches.
    let Some(slash) = memchr::memrchr(b'/', r.as_bytes()) else { return Err(r) };
    let head = &r[..slash];
    let ty = &head[memchr::memrchr(b'/', head.as_bytes()).map_or(0, |p| p + 1)..];
    Ok((ty, &r[slash + 1..]))
}

/// Where `/_history/` starts in a reference (a byte scan for `_`: cheaper than a substring
/// search set up per call, and references rarely hold a `_`).
fn history_at(reference: &str) -> Option<usize> {
    let b = reference.as_bytes();
    let mut from = 1;
    while let Some(p) = b.get(from..)?.iter().position(|&c| c == b'_') {
        let at = from + p;
        if b[at - 1] == b'/' && b[at..].starts_with(b"_history/") {
            return Some(at - 1);
        }
        from = at + 1;
    }
    None
}

/// The key of a resource: `Type/id`, else the alias the reader gave it (its fullUrl).
pub fn resource_key(res: J<'_>, ctx: &Ctx<'_>) -> Option<String> {
    let (ty, id) = match ctx.root {
        Some(ix) if res.same(ix.resource) => (ix.resource_type?, ix.id),
        _ => (res.str_of("resourceType")?, res.str_of("id")),
    };
    match id {
        Some(id) => Some(join3(ty, "/", id)),
        None => ctx.resource_key.map(str::to_owned),
    }
}

/// `a + sep + b` in one allocation (`format!` costs more: it showed in the ingest profile,
/// with a key built per resource and per reference).
#[inline]
fn join3(a: &str, sep: &str, b: &str) -> String {
    let mut s = String::with_capacity(a.len() + sep.len() + b.len());
    s.push_str(a);
    s.push_str(sep);
    s.push_str(b);
    s
}

/// `&`: string concatenation, empty counting as `''`. A left side that is already a computed
/// string is extended in place, so `a & '|' & b` builds one string.
fn concat<'a>(mut x: Coll<'a>, y: &[Item<'a>]) -> PResult<Coll<'a>> {
    let both = single(&x, "arithmetic")?.is_some() && single(y, "arithmetic")?.is_some();
    // With both sides single, numbers and booleans are written out; with one side empty, only
    // strings count.
    let push = |s: &mut String, i: &Item<'_>| {
        if both {
            push_prim(s, &i.prim());
        } else {
            s.push_str(i.as_str().unwrap_or_default());
        }
    };
    let mut s = match x.pop() {
        Some(Item::Str(Cow::Owned(s))) => s,
        Some(other) => {
            // Room for the right side too, and for a further `& …` (`system & '|' & code`
            // is the common shape), so the string is not grown again.
            let mut s = String::with_capacity(other.as_str().map_or(0, str::len) + 32);
            push(&mut s, &other);
            s
        }
        None => String::new(),
    };
    if let Some(i) = y.first() {
        push(&mut s, i);
    }
    Ok(smallvec![Item::Str(Cow::Owned(s))])
}

/// The member `name` of the one object in `input` as [`walk`] finds it, where that is one
/// string (`Some(Some)`) or nothing (`Some(None)`); `None` for anything else (several items,
/// another kind, an array, choice-type members, a member named like the resource type).
#[inline]
fn member_text<'a>(name: &str, input: &[Item<'a>]) -> Option<Option<&'a str>> {
    let [Item::Node(v, _)] = input else { return None };
    if !v.is_object() {
        return None;
    }
    lookup(*v, name).text(name)
}

/// A [`Join`] on one object whose members in `parts` are each a string or absent: what the
/// nested `&` nodes give (an absent member counts as `''`), as one string. `None` for any
/// other input, which the nested nodes then evaluate.
fn join_direct(parts: &[JoinPart], input: &[Item<'_>]) -> Option<String> {
    if !matches!(input, [Item::Node(v, _)] if v.is_object()) {
        return None;
    }
    // At most four members are looked up (`a & '|' & b` has two); longer chains take the
    // general form.
    let mut found: [&str; 4] = [""; 4];
    let mut len = 0;
    let mut m = 0;
    for p in parts {
        match p {
            JoinPart::Lit(l) => len += l.len(),
            JoinPart::Member(name) => {
                let slot = found.get_mut(m)?;
                m += 1;
                *slot = member_text(name, input)?.unwrap_or_default();
                len += slot.len();
            }
        }
    }
    let mut s = String::with_capacity(len);
    let mut m = 0;
    for p in parts {
        match p {
            JoinPart::Lit(l) => s.push_str(l),
            JoinPart::Member(_) => {
                s.push_str(found[m]);
                m += 1;
            }
        }
    }
    Some(s)
}

fn arith<'a>(op: BinOp, a: &[Item<'a>], b: &[Item<'a>]) -> PResult<Coll<'a>> {
    // `&` never comes here ([`concat`]).
    let (Some(x), Some(y)) = (single(a, "arithmetic")?, single(b, "arithmetic")?) else {
        return Ok(smallvec![]);
    };
    let (px, py) = (x.prim(), y.prim());
    if let (BinOp::Add, Prim::Str(s), Prim::Str(t)) = (op, &px, &py) {
        return Ok(smallvec![Item::Str(format!("{s}{t}").into())]);
    }
    if let (Prim::Int(i), Prim::Int(j)) = (&px, &py) {
        let (i, j) = (*i, *j);
        let r = match op {
            BinOp::Add => i.checked_add(j),
            BinOp::Sub => i.checked_sub(j),
            BinOp::Mul => i.checked_mul(j),
            BinOp::IntDiv => i.checked_div(j),
            BinOp::Mod => i.checked_rem(j),
            _ => None,
        };
        if let Some(r) = r {
            return Ok(smallvec![Item::Int(r)]);
        }
        if op != BinOp::Div {
            return Ok(smallvec![]);
        }
    }
    let (Some(i), Some(j)) = (num(&px), num(&py)) else { return err("arithmetic on non-numeric values") };
    let r = match op {
        BinOp::Add => i + j,
        BinOp::Sub => i - j,
        BinOp::Mul => i * j,
        BinOp::Div if j != 0.0 => i / j,
        BinOp::IntDiv if j != 0.0 => return Ok(smallvec![Item::Int((i / j).trunc() as i64)]),
        BinOp::Mod if j != 0.0 => i % j,
        _ => return Ok(smallvec![]),
    };
    Ok(smallvec![Item::Dec(r)])
}

/// Append the text of a primitive (as [`px_str`]) without an intermediate string.
fn push_prim(out: &mut String, p: &Prim<'_>) {
    use std::fmt::Write;
    let _ = match p {
        Prim::Str(s) => {
            out.push_str(s);
            Ok(())
        }
        Prim::Int(i) => write!(out, "{i}"),
        Prim::Dec(d) => write!(out, "{d}"),
        Prim::Bool(b) => write!(out, "{b}"),
        Prim::Complex => Ok(()),
    };
}

fn px_str(p: &Prim<'_>) -> String {
    px_text(*p).into_owned()
}

/// [`px_str`] without copying a string (`startsWith()` and its kin test one per item).
fn px_text(p: Prim<'_>) -> Cow<'_, str> {
    match p {
        Prim::Str(s) => Cow::Borrowed(s),
        Prim::Int(i) => Cow::Owned(i.to_string()),
        Prim::Dec(d) => Cow::Owned(d.to_string()),
        Prim::Bool(b) => Cow::Owned(b.to_string()),
        Prim::Complex => Cow::Borrowed(""),
    }
}

fn compare<'a>(op: BinOp, a: &[Item<'a>], b: &[Item<'a>]) -> PResult<Coll<'a>> {
    let (Some(x), Some(y)) = (single(a, "comparison")?, single(b, "comparison")?) else { return Ok(smallvec![]) };
    let ord = match (x.prim(), y.prim()) {
        (Prim::Str(s), Prim::Str(t)) => {
            if temporal_kind(x).is_some() && temporal_kind(y).is_some() && s.len() != t.len() {
                return Ok(smallvec![]);
            }
            s.cmp(t)
        }
        (px, py) => match (num(&px), num(&py)) {
            (Some(i), Some(j)) => match i.partial_cmp(&j) {
                Some(o) => o,
                None => return Ok(smallvec![]),
            },
            _ => return err("comparison of incompatible values"),
        },
    };
    use std::cmp::Ordering::{Greater, Less};
    let r = match op {
        BinOp::Lt => ord == Less,
        BinOp::Le => ord != Greater,
        BinOp::Gt => ord == Greater,
        _ => ord != Less,
    };
    Ok(smallvec![Item::Bool(r)])
}

fn logic<'a>(op: BinOp, a: Option<bool>, b: Option<bool>) -> Coll<'a> {
    let r = match op {
        BinOp::And => match (a, b) {
            (Some(false), _) | (_, Some(false)) => Some(false),
            (Some(true), Some(true)) => Some(true),
            _ => None,
        },
        BinOp::Or => match (a, b) {
            (Some(true), _) | (_, Some(true)) => Some(true),
            (Some(false), Some(false)) => Some(false),
            _ => None,
        },
        BinOp::Xor => match (a, b) {
            (Some(x), Some(y)) => Some(x != y),
            _ => None,
        },
        _ => match (a, b) {
            (Some(false), _) | (_, Some(true)) => Some(true),
            (Some(true), Some(false)) => Some(false),
            _ => None,
        },
    };
    r.map(Item::Bool).into_iter().collect()
}

/// Evaluate `expr` with `input` as the focus (`$this`).
pub fn eval<'a>(expr: &'a Expr, input: &[Item<'a>], ctx: &Ctx<'a>) -> PResult<Coll<'a>> {
    let mut out = Coll::new();
    eval_into(expr, input, ctx, &mut out)?;
    Ok(out)
}

/// [`eval`] into `out`, which is empty on entry (a caller evaluating many expressions reuses
/// one collection). The forms a view's columns are made of (paths, fused comparisons and
/// joins, calls) write their items into `out` in place; a collection returned through each
/// level of an expression was moved (about 100 bytes) at every level.
pub fn eval_into<'a>(expr: &'a Expr, input: &[Item<'a>], ctx: &Ctx<'a>, out: &mut Coll<'a>) -> PResult<()> {
    debug_assert!(out.is_empty(), "eval_into starts from an empty collection");
    let items: Coll<'a> = match expr {
        Expr::This => input.iter().cloned().collect(),
        Expr::Str(s) => smallvec![Item::Str(Cow::Borrowed(s))],
        Expr::Int(i) => smallvec![Item::Int(*i)],
        Expr::Dec(d, _) => smallvec![Item::Dec(*d)],
        Expr::Bool(b) => smallvec![Item::Bool(*b)],
        Expr::Empty => smallvec![],
        Expr::DateLit(d) => {
            let kind = if d.starts_with('T') {
                TemporalKind::Time
            } else if d.contains('T') {
                TemporalKind::DateTime
            } else {
                TemporalKind::Date
            };
            smallvec![Item::Temporal(d.trim_start_matches('T').to_owned(), kind)]
        }
        Expr::Const(name) => match name.as_str() {
            "rowIndex" => smallvec![Item::Int(ctx.row_index)],
            "resource" | "rootResource" | "context" => smallvec![Item::Node(ctx.resource, None)],
            _ => match ctx.constants.get(name) {
                Some((v, ty)) => smallvec![Item::Const(v, ty)],
                None => return err(format!("undefined constant `%{name}`")),
            },
        },
        // Parsed expressions hold members as fused paths; this step-at-a-time form is what
        // `parse_nested` gives, the reference the fused paths are tested against.
        Expr::Member(base, name) => {
            let mut out = Coll::new();
            if matches!(**base, Expr::This) {
                // The implicit start of a path: navigate from the focus without copying it.
                member(input, name, &mut out);
            } else {
                member(&eval(base, input, ctx)?, name, &mut out);
            }
            out
        }
        Expr::Index(base, idx) => {
            let b = eval(base, input, ctx)?;
            let i = eval(idx, input, ctx)?;
            match single(&i, "index")?.map(Item::prim) {
                Some(Prim::Int(n)) if n >= 0 => b.into_iter().nth(n as usize).into_iter().collect(),
                Some(Prim::Int(_)) | None => smallvec![],
                Some(_) => return err("index must be an integer"),
            }
        }
        Expr::Neg(e) => {
            let v = eval(e, input, ctx)?;
            match single(&v, "unary minus")?.map(Item::prim) {
                None => smallvec![],
                Some(Prim::Int(i)) => smallvec![Item::Int(-i)],
                Some(Prim::Dec(d)) => smallvec![Item::Dec(-d)],
                Some(_) => return err("unary minus on a non-number"),
            }
        }
        Expr::TypeOp(is, e, ty) => {
            let v = eval(e, input, ctx)?;
            if *is {
                match single(&v, "is")? {
                    None => smallvec![],
                    Some(i) => smallvec![Item::Bool(type_matches(i, ty))],
                }
            } else {
                v.into_iter().filter(|i| type_matches(i, ty)).collect()
            }
        }
        Expr::Bin(op, a, b) => {
            let op = *op;
            match op {
                BinOp::And | BinOp::Or | BinOp::Xor | BinOp::Implies => {
                    let x = to_bool(&eval(a, input, ctx)?)?;
                    let y = to_bool(&eval(b, input, ctx)?)?;
                    logic(op, x, y)
                }
                BinOp::Concat => concat(eval(a, input, ctx)?, &eval(b, input, ctx)?)?,
                BinOp::Union => {
                    // The left side's items, then the right side's, each kept unless an equal
                    // one is already there (duplicates within a side go too), written into
                    // `out`: a chain `a | b | c` nests, and every level writes there.
                    eval_into(a, input, ctx, out)?;
                    let left = std::mem::take(out);
                    for i in left.into_iter().chain(eval(b, input, ctx)?) {
                        push_distinct(out, i);
                    }
                    return Ok(());
                }
                _ => {
                    let x = eval(a, input, ctx)?;
                    let y = eval(b, input, ctx)?;
                    match op {
                        BinOp::Eq => coll_eq(&x, &y).map(Item::Bool).into_iter().collect(),
                        BinOp::Ne => coll_eq(&x, &y).map(|b| Item::Bool(!b)).into_iter().collect(),
                        BinOp::Equiv => smallvec![Item::Bool(equiv(&x, &y))],
                        BinOp::NotEquiv => smallvec![Item::Bool(!equiv(&x, &y))],
                        BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge => compare(op, &x, &y)?,
                        BinOp::In | BinOp::Contains => {
                            let (needle, hay) = if op == BinOp::In { (x, y) } else { (y, x) };
                            match single(&needle, "in")? {
                                None => smallvec![],
                                Some(n) => smallvec![Item::Bool(hay.iter().any(|h| prim_eq(h, n) == Some(true)))],
                            }
                        }
                        _ => arith(op, &x, &y)?,
                    }
                }
            }
        }
        Expr::Call(base, func, args) => {
            let mut b = Coll::new();
            eval_into(base, input, ctx, &mut b)?;
            return call(*func, b, args, input, ctx, out);
        }
        Expr::Compare(c) => {
            // On the resource itself the member is read from the root index.
            let text = match (ctx.root, input) {
                (Some(ix), [Item::Node(v, _)]) if c.root_slot != u16::MAX && v.same(ix.resource) => {
                    ix.member_text(c.root_slot, &c.member)
                }
                _ => member_text(&c.member, input),
            };
            match text {
                Some(Some(s)) => out.push(Item::Bool((s == c.text) != c.not)),
                Some(None) => {}
                None => return eval_into(&c.general, input, ctx, out),
            }
            return Ok(());
        }
        Expr::Otherwise(o) => {
            eval_into(&o.0, input, ctx, out)?;
            return if out.is_empty() { eval_into(&o.1, input, ctx, out) } else { Ok(()) };
        }
        Expr::Join(j) => match join_direct(&j.parts, input) {
            Some(s) => {
                out.push(Item::Str(Cow::Owned(s)));
                return Ok(());
            }
            None => return eval_into(&j.general, input, ctx, out),
        },
        Expr::Path(p) => return path_into(p, input, ctx, out),
    };
    *out = items;
    Ok(())
}

/// A fused path's items into `out` (empty on entry).
#[inline]
fn path_into<'a>(p: &'a Path, input: &[Item<'a>], ctx: &Ctx<'a>, out: &mut Coll<'a>) -> PResult<()> {
    // A path at the start of an expression navigates from the focus without copying it.
    let based;
    let from: &[Item<'a>] = if matches!(p.base, Expr::This) {
        input
    } else {
        based = eval(&p.base, input, ctx)?;
        &based
    };
    let limit = if p.end == End::Items { usize::MAX } else { 1 };
    for it in from {
        let done = match (ctx.root, p.steps.split_first(), it) {
            (Some(ix), Some((Step::Member(name), rest)), Item::Node(v, _))
                if p.root_slot != u16::MAX && v.same(ix.resource) =>
            {
                match ix.walk(it, p.root_slot, name, rest, out, limit) {
                    Some(d) => d,
                    None => walk(it, &p.steps, out, limit),
                }
            }
            _ => walk(it, &p.steps, out, limit),
        };
        if done {
            break;
        }
    }
    match p.end {
        End::Items | End::First => {}
        End::Exists | End::Empty => {
            let found = !out.is_empty();
            out.clear();
            out.push(Item::Bool(found == (p.end == End::Exists)));
        }
    }
    Ok(())
}

/// The items `steps` reach from `it`, appended to `out` in order; true once `out` holds
/// `limit` items (navigation stops there).
fn walk<'a>(it: &Item<'a>, steps: &'a [Step], out: &mut Coll<'a>, limit: usize) -> bool {
    let Some((step, rest)) = steps.split_first() else {
        out.push(it.clone());
        return out.len() >= limit;
    };
    match step {
        Step::OfType(t) => type_matches(it, t) && walk(it, rest, out, limit),
        Step::Member(name) => {
            let Item::Node(v, _) = *it else { return false };
            if !v.is_object() {
                return false;
            }
            // As in `member`: the exact name, else the node itself when `name` is its resource
            // type, else the choice-type members in input order.
            let l = lookup(v, name);
            if let Some(x) = l.exact {
                return walk_value(x, None, rest, out, limit);
            }
            if l.resource_type == Some(name.as_str()) {
                return walk(it, rest, out, limit);
            }
            l.choice && walk_choices(v, name, rest, out, limit)
        }
    }
}

/// [`walk`] on each choice-type member of `name` in `v` (`valueQuantity`, … for `value`), in
/// input order, with its type.
fn walk_choices<'a>(v: J<'a>, name: &str, rest: &'a [Step], out: &mut Coll<'a>, limit: usize) -> bool {
    for (k, x) in v.members() {
        if let Some(ty) = choice_suffix(k, name)
            && walk_value(x, Some(ty), rest, out, limit)
        {
            return true;
        }
    }
    false
}

/// [`walk`] on a member's value: each element of an array (nulls skipped), nothing for
/// `null`, else the value itself.
#[inline]
fn walk_value<'a>(x: J<'a>, ty: Option<&'a str>, rest: &'a [Step], out: &mut Coll<'a>, limit: usize) -> bool {
    match x.kind() {
        Kind::Array => {
            for e in x.elements() {
                if !e.is_null() && walk(&Item::Node(e, ty), rest, out, limit) {
                    return true;
                }
            }
            false
        }
        Kind::Null => false,
        _ => walk(&Item::Node(x, ty), rest, out, limit),
    }
}

/// `i` appended to `out` unless an equal item is already there (`|`, `distinct()`).
fn push_distinct<'a>(out: &mut Coll<'a>, i: Item<'a>) {
    if !out.iter().any(|o| prim_eq(o, &i) == Some(true)) {
        out.push(i);
    }
}

/// A function's criterion on one item (`where`, `exists`, `all`), as a boolean: evaluated into
/// `scratch`, one collection the caller reuses for every item.
fn criterion_on<'a>(
    criterion: &'a Expr,
    it: &Item<'a>,
    ctx: &Ctx<'a>,
    scratch: &mut Coll<'a>,
) -> PResult<Option<bool>> {
    scratch.clear();
    eval_into(criterion, std::slice::from_ref(it), ctx, scratch)?;
    to_bool(scratch)
}

/// The function `func` on `b` (its base's items) into `out` (empty on entry).
fn call<'a>(
    func: Func,
    b: Coll<'a>,
    args: &'a [Expr],
    outer: &[Item<'a>],
    ctx: &Ctx<'a>,
    out: &mut Coll<'a>,
) -> PResult<()> {
    let name = func.name();
    let arg_single = |i: usize| -> PResult<Option<Item<'a>>> {
        let v = eval(&args[i], outer, ctx)?;
        Ok(single(&v, name)?.cloned())
    };
    let items: Coll<'a> = match func {
        Func::Where => {
            let mut r = Coll::new();
            for it in b {
                if criterion_on(&args[0], &it, ctx, &mut r)? == Some(true) {
                    out.push(it);
                }
            }
            return Ok(());
        }
        // One item (a coding, a Quantity): its projection is the result as it comes.
        Func::Select if b.len() == 1 => return eval_into(&args[0], &b, ctx, out),
        Func::Select => {
            let mut r = Coll::new();
            for it in b {
                eval_into(&args[0], std::slice::from_ref(&it), ctx, &mut r)?;
                out.extend(r.drain(..));
            }
            return Ok(());
        }
        Func::All => {
            let mut all = true;
            let mut r = Coll::new();
            for it in b {
                if criterion_on(&args[0], &it, ctx, &mut r)? != Some(true) {
                    all = false;
                }
            }
            smallvec![Item::Bool(all)]
        }
        Func::Exists => {
            // Any item at all, or with a criterion any item it holds for.
            let mut any = args.is_empty() && !b.is_empty();
            if let Some(criterion) = args.first() {
                let mut r = Coll::new();
                for it in b {
                    if criterion_on(criterion, &it, ctx, &mut r)? == Some(true) {
                        any = true;
                        break;
                    }
                }
            }
            out.push(Item::Bool(any));
            return Ok(());
        }
        Func::Empty => smallvec![Item::Bool(b.is_empty())],
        Func::HasValue => smallvec![Item::Bool(b.len() == 1 && b[0].prim() != Prim::Complex)],
        Func::First => {
            out.extend(b.into_iter().take(1));
            return Ok(());
        }
        Func::Last => b.into_iter().next_back().into_iter().collect(),
        Func::Tail => b.into_iter().skip(1).collect(),
        Func::Single => {
            if b.len() > 1 {
                return err("single(): more than one value");
            }
            b
        }
        Func::Skip | Func::Take => {
            let n = match arg_single(0)?.map(|i| i.prim().clone_int()) {
                Some(Some(n)) => n.max(0) as usize,
                _ => return err(format!("{name}(): expected an integer")),
            };
            if func == Func::Skip { b.into_iter().skip(n).collect() } else { b.into_iter().take(n).collect() }
        }
        Func::Count => smallvec![Item::Int(b.len() as i64)],
        Func::Distinct => {
            for i in b {
                push_distinct(out, i);
            }
            return Ok(());
        }
        Func::Not => match to_bool(&b)? {
            Some(v) => smallvec![Item::Bool(!v)],
            None => smallvec![],
        },
        Func::AllTrue => smallvec![Item::Bool(b.iter().all(|i| i.prim() == Prim::Bool(true)))],
        Func::AnyTrue => smallvec![Item::Bool(b.iter().any(|i| i.prim() == Prim::Bool(true)))],
        Func::Join => {
            let sep = match args.first() {
                Some(_) => arg_single(0)?.and_then(|i| i.as_str().map(str::to_owned)).unwrap_or_default(),
                None => String::new(),
            };
            let parts: Vec<String> = b.iter().map(|i| px_str(&i.prim())).collect();
            smallvec![Item::Str(parts.join(&sep).into())]
        }
        Func::OfType => {
            let ty = type_arg(args)?;
            b.into_iter().filter(|i| type_matches(i, ty)).collect()
        }
        Func::As => {
            let ty = type_arg(args)?;
            b.into_iter().filter(|i| type_matches(i, ty)).collect()
        }
        Func::Is => {
            let ty = type_arg(args)?;
            match single(&b, "is")? {
                None => smallvec![],
                Some(i) => smallvec![Item::Bool(type_matches(i, ty))],
            }
        }
        Func::Extension => {
            let arg = arg_single(0)?;
            let url = arg.as_ref().and_then(Item::as_str).unwrap_or_default();
            let mut exts = Coll::new();
            member(&b, "extension", &mut exts);
            exts.into_iter().filter(|e| matches!(e, Item::Node(v, _) if v.str_of("url") == Some(url))).collect()
        }
        Func::GetResourceKey => {
            for it in &b {
                if let Item::Node(v, _) = it
                    && let Some(k) = resource_key(*v, ctx)
                {
                    out.push(Item::Str(k.into()));
                }
            }
            return Ok(());
        }
        Func::GetReferenceKey => {
            let ty = if args.is_empty() { None } else { Some(type_arg(args)?) };
            for it in &b {
                let Item::Node(v, _) = it else { continue };
                let Some(r) = v.str_of("reference") else { continue };
                let key = reference_key(r, ctx);
                let ok = match &ty {
                    None => true,
                    Some(t) => key.split('/').next() == Some(*t) && key.contains('/'),
                };
                if ok {
                    out.push(Item::Str(key.into()));
                }
            }
            return Ok(());
        }
        Func::LowBoundary | Func::HighBoundary => {
            b.iter().filter_map(|i| boundary(i, func == Func::HighBoundary)).collect()
        }
        Func::ToString => b.iter().map(|i| Item::Str(px_str(&i.prim()).into())).collect(),
        Func::ToInteger => b
            .iter()
            .filter_map(|i| match i.prim() {
                Prim::Int(n) => Some(Item::Int(n)),
                Prim::Str(s) => s.parse().ok().map(Item::Int),
                Prim::Bool(x) => Some(Item::Int(i64::from(x))),
                _ => None,
            })
            .collect(),
        Func::ToDecimal => b
            .iter()
            .filter_map(|i| match i.prim() {
                Prim::Int(n) => Some(Item::Dec(n as f64)),
                Prim::Dec(d) => Some(Item::Dec(d)),
                Prim::Str(s) => s.parse().ok().map(Item::Dec),
                _ => None,
            })
            .collect(),
        Func::StartsWith | Func::EndsWith | Func::Contains => {
            let Some(s) = single(&b, name)?.map(|i| px_text(i.prim())) else { return Ok(()) };
            let arg = arg_single(0)?;
            let Some(p) = arg.as_ref().map(|i| px_text(i.prim())) else { return Ok(()) };
            smallvec![Item::Bool(match func {
                Func::StartsWith => s.starts_with(&*p),
                Func::EndsWith => s.ends_with(&*p),
                _ => s.contains(&*p),
            })]
        }
        Func::Iif => {
            let c = to_bool(&eval(&args[0], &b, ctx)?)?;
            if c == Some(true) {
                eval(&args[1], outer, ctx)?
            } else if let Some(e) = args.get(2) {
                eval(e, outer, ctx)?
            } else {
                smallvec![]
            }
        }
    };
    *out = items;
    Ok(())
}

impl Prim<'_> {
    fn clone_int(&self) -> Option<i64> {
        match self {
            Prim::Int(i) => Some(*i),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(expr: &str, res: &Value) -> Vec<Value> {
        try_run(expr, res).expect("eval")
    }

    fn try_run(expr: &str, res: &Value) -> PResult<Vec<Value>> {
        let e = parse(expr).expect("parse");
        let consts = HashMap::new();
        let text = res.to_string();
        super::super::json::Parser::new().parse(text.as_bytes(), |r| {
            let res = r.expect("valid JSON");
            let ctx =
                Ctx { resource: res, constants: &consts, row_index: 0, aliases: None, resource_key: None, root: None };
            Ok(eval(&e, &[Item::Node(res, None)], &ctx)?.iter().map(Item::to_json).collect())
        })
    }

    #[test]
    fn navigation_choice_types_and_functions() {
        let r = json!({"resourceType": "Observation", "id": "o1", "valueQuantity": {"value": 1.5},
            "name": [{"use": "official", "family": "A", "given": ["x", "y"]}, {"family": "B"}]});
        assert_eq!(run("value.ofType(Quantity).value", &r), vec![json!(1.5)]);
        assert_eq!(run("value.ofType(string)", &r), Vec::<Value>::new());
        assert_eq!(run("name.where(use = 'official').family", &r), vec![json!("A")]);
        assert_eq!(run("name.given.join(',')", &r), vec![json!("x,y")]);
        assert_eq!(run("name[1].family", &r), vec![json!("B")]);
        assert_eq!(run("name.family.first() & '|' & id", &r), vec![json!("A|o1")]);
        assert_eq!(run("Observation.id", &r), vec![json!("o1")]);
        assert_eq!(run("getResourceKey()", &r), vec![json!("Observation/o1")]);
        assert_eq!(run("name.exists() and id = 'o2'", &r), vec![json!(false)]);
        assert_eq!(run("(1 + 2) * 3 = 9", &r), vec![json!(true)]);
        assert_eq!(run("{}.exists()", &r), vec![json!(false)]);
    }

    #[test]
    fn union_keeps_the_first_of_equal_items_in_order() {
        let r = json!({"resourceType": "Observation", "a": ["x", "y", "x", "z"], "b": ["z", "w", "y"], "n": [1, 1.0, 2],
            "e": {"valueDateTime": "2020-01-02"}});
        let cases: [(&str, Value); 8] = [
            ("a | b", json!(["x", "y", "z", "w"])),
            ("b | a", json!(["z", "w", "y", "x"])),
            ("a | {}", json!(["x", "y", "z"])),
            ("{} | b", json!(["z", "w", "y"])),
            ("a | b | a", json!(["x", "y", "z", "w"])),
            ("n | 2", json!([1, 2])),
            ("missing | missing", json!([])),
            ("e.value.ofType(dateTime) | e.value.ofType(Period).start | 'q'", json!(["2020-01-02", "q"])),
        ];
        for (expr, want) in cases {
            assert_eq!(Value::Array(run(expr, &r)), want, "{expr}");
        }
    }

    /// `startsWith()`, `endsWith()` and `contains()` read strings where they are and write
    /// numbers and booleans out: each case fails if either side is taken as empty or as the
    /// other's text.
    #[test]
    fn string_tests_compare_the_texts_of_both_sides() {
        let r = json!({"resourceType": "Observation", "s": "http://x.jp/a", "n": 120, "b": true, "d": 1.5,
            "many": ["a", "b"]});
        let cases = [
            ("s.startsWith('http://x')", Some(true)),
            ("s.startsWith('x.jp')", Some(false)),
            ("s.endsWith('/a')", Some(true)),
            ("s.endsWith('http')", Some(false)),
            ("s.contains('x.jp')", Some(true)),
            ("s.contains('y.jp')", Some(false)),
            ("s.startsWith('')", Some(true)),
            ("n.startsWith('12')", Some(true)),
            ("n.startsWith(2)", Some(false)),
            ("n.endsWith(20)", Some(true)),
            ("b.startsWith('tr')", Some(true)),
            ("d.contains('.5')", Some(true)),
            ("'abc'.startsWith(s)", Some(false)),
            ("'http://x.jp/abc'.startsWith(s)", Some(true)),
            ("absent.startsWith('a')", None),
            ("s.startsWith(absent)", None),
        ];
        for (expr, want) in cases {
            let got = run(expr, &r);
            assert_eq!(got, want.map(|b| json!(b)).into_iter().collect::<Vec<_>>(), "{expr}");
        }
        // Several items on the left are an error, as for any function that takes one.
        assert!(try_run("many.startsWith('a')", &r).is_err());
    }

    #[test]
    fn boundaries_follow_precision() {
        let r = json!({"resourceType": "Patient", "birthDate": "1970-02", "v": 1});
        assert_eq!(run("birthDate.highBoundary()", &r), vec![json!("1970-02-28")]);
        // FHIRPath: an integer has precision 0, so its boundaries are ±0.5 (`1.lowBoundary()` = 0.5).
        assert_eq!(run("v.lowBoundary()", &r), vec![json!(0.5)]);
    }

    #[test]
    fn reference_keys_drop_history_and_base() {
        assert_eq!(reference_key_plain("Patient/1/_history/2"), "Patient/1");
        assert_eq!(reference_key_plain("https://x.jp/fhir/Patient/1/_history/2"), "Patient/1");
        assert_eq!(reference_key_plain("Patient/a_b"), "Patient/a_b");
        assert_eq!(reference_key_plain("Patient/_history"), "Patient/_history");
        assert_eq!(reference_key_plain("urn:uuid:1_2"), "urn:uuid:1_2");
        // The type alone is the key's first segment, whatever the reference's form.
        for r in [
            "Patient/1/_history/2",
            "https://x.jp/fhir/Practitioner/1/_history/2",
            "Organization/a_b",
            "Encounter/_history",
            "urn:uuid:1_2",
            "urn:oid:1.2/x",
            "Location",
            "/123",
            "",
        ] {
            let key = reference_key_plain(r);
            assert_eq!(reference_type_plain(r), key.split('/').next().unwrap_or_default(), "{r}");
        }
        // Without a history suffix or `urn:`, the last two segments, as `rsplit('/')` gives them.
        for r in ["Patient/1", "a/b/c", "a//b", "/x", "x/", "/", "//", "x", "", "https://h/P/1"] {
            let mut it = r.rsplit('/');
            let want = match (it.next(), it.next()) {
                (Some(id), Some(ty)) => Ok((ty, id)),
                _ => Err(r),
            };
            assert_eq!(reference_parts(r), want, "{r}");
        }
        let r = json!({"resourceType": "Condition", "subject": {"reference": "Patient/p_1/_history/3"}, "v": 2});
        assert_eq!(run("subject.getReferenceKey()", &r), vec![json!("Patient/p_1")]);
        assert_eq!(run("'a' & '|' & 'b' & {} & v", &r), vec![json!("a|b2")]);
        assert_eq!(run("('a' & '|') & v", &r), vec![json!("a|2")]);
    }

    #[test]
    fn syntax_errors_are_reported() {
        assert!(parse("@@").is_err());
        assert!(parse("name.(").is_err());
        assert!(parse("name.frobnicate()").is_err());
        assert!(parse("").is_err());
    }

    /// The FHIRPath strings of a ViewDefinition (or of anything holding some).
    fn view_paths(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                for (k, x) in m {
                    match (k.as_str(), x) {
                        ("path" | "forEach" | "forEachOrNull", Value::String(p)) => out.push(p.clone()),
                        ("repeat", Value::Array(ps)) => {
                            out.extend(ps.iter().filter_map(Value::as_str).map(str::to_owned))
                        }
                        _ => view_paths(x, out),
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(|x| view_paths(x, out)),
            _ => {}
        }
    }

    /// Fused paths against the parser's nested nodes: every path of the conformance suite and
    /// of the pipelines' views, on every object of the suite's resources and of the FHIR
    /// fixtures (each as the focus, its resource as `%resource`) give the same items in the same
    /// order, or the same error.
    #[test]
    fn fused_paths_evaluate_as_the_nested_nodes() {
        let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
        let read =
            |p: &std::path::Path| -> Value { serde_json::from_slice(&std::fs::read(p).expect("read")).expect("json") };
        let files = |dir: &str| -> Vec<std::path::PathBuf> {
            let mut v: Vec<_> = std::fs::read_dir(root.join(dir))
                .expect("dir")
                .map(|e| e.expect("entry").path())
                .filter(|p| p.extension().is_some_and(|x| x == "json"))
                .collect();
            v.sort();
            v
        };
        let mut paths = Vec::new();
        let mut docs = Vec::new();
        for f in files("tests/data/sql-on-fhir-v2") {
            let doc = read(&f);
            view_paths(&doc["tests"], &mut paths);
            docs.extend(doc["resources"].as_array().cloned().unwrap_or_default());
        }
        for f in files("pipelines/views") {
            view_paths(&read(&f), &mut paths);
        }
        for dir in ["tests/data/jp-clins", "tests/data/synthea"] {
            for f in files(dir) {
                let doc = read(&f);
                let entries: Vec<Value> = doc["entry"]
                    .as_array()
                    .map(|es| es.iter().map(|e| e["resource"].clone()).collect())
                    .unwrap_or_default();
                docs.push(doc);
                docs.extend(entries);
            }
        }
        // `&` chains ([`Join`]) and comparisons ([`Compare`]) over members of every kind the
        // texts below give them.
        for p in [
            "system & '|' & code",
            "code & '-' & system & ':' & display & version",
            "'<' & system & '>'",
            "system & value",
            "system & '|' & Coding",
            "value & '|' & code",
            "(system & '|') & (code & '|')",
            "system = 's'",
            "system != 's'",
            "code = 'a' or code = 'k'",
            "Coding = 'z'",
            "value != 'x'",
            "status != 'entered-in-error' or status.empty()",
            "iif(code.exists(), code, unit)",
            "iif(value.exists(), value, code)",
            "iif(value.exists(), value)",
            "iif(coding.code.exists(), coding.code, text)",
            "iif(code.exists(), system, unit)",
            "iif(code.exists(), code.first(), unit)",
            "iif(code.empty(), code, unit)",
            "code.iif(code.exists(), code, unit)",
            "iif(Coding.exists(), Coding, value)",
            "coding.where(system = 's').exists()",
            "coding.where(code = 'a' or code = 'b').exists()",
            "coding.where(system != 's' and code.exists()).exists()",
            "coding.where(display.empty()).exists()",
            "coding.where(code).exists()",
            "coding.where(code = 'a').exists(code = 'b')",
            "where(value = 'x').exists()",
            "coding.where(code = %missing).exists()",
            "coding.where(code = 'a' or system).exists()",
        ] {
            paths.push(p.to_owned());
        }
        paths.sort();
        paths.dedup();
        let mut parsed: Vec<(Expr, Expr)> =
            paths.iter().filter_map(|p| Some((parse(p).ok()?, parse_nested(p).ok()?))).collect();
        assert!(parsed.len() > 150, "{} paths", parsed.len());
        assert!(parsed.iter().filter(|(f, _)| matches!(f, Expr::Path(_))).count() > 50);
        let fused = |kind: fn(&Expr) -> bool| {
            let mut n = 0;
            for (f, _) in &parsed {
                f.clone().visit_mut(&mut |x| n += usize::from(kind(x)));
            }
            n
        };
        assert!(fused(|x| matches!(x, Expr::Join(_))) >= 10, "too few `&` chains fused");
        assert!(fused(|x| matches!(x, Expr::Compare(_))) >= 5, "too few comparisons fused");
        assert!(fused(|x| matches!(x, Expr::Otherwise(_))) >= 5, "too few `iif`s fused");
        assert!(
            fused(|x| matches!(x, Expr::Call(_, Func::Exists, a) if a.len() == 1)) >= 5,
            "too few `where(…).exists()` fused"
        );
        let consts = HashMap::new();
        let mut names = Vec::new();
        for (fused, _) in &mut parsed {
            fused.root_names(&mut names);
        }
        let names = RootNames::new(names);
        let parsed: Vec<(Expr, Expr)> = parsed
            .into_iter()
            .map(|(mut f, n)| {
                f.index_roots(&names);
                (f, n)
            })
            .collect();
        // Texts as parsed (serde_json would keep one of a repeated key): repeated members,
        // several choice-type members of one name, and a member named like the resource type.
        let mut texts: Vec<String> = docs.iter().map(Value::to_string).collect();
        texts.push(
            r#"{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"s","code":"a"}],"text":"a"},"valueQuantity":{"value":1,"unit":"u"},"subject":{"reference":"Patient/1"},"status":"amended","valueString":"s","code":{"coding":[{"system":"s","code":"b"}],"text":"b"},"valueBoolean":true,"subject":{"reference":"Patient/2"}}"#.into(),
        );
        texts.push(
            r#"{"resourceType":"Patient","Patient":{"id":"inner"},"name":[{"family":"f"}],"deceasedDateTime":"2020"}"#
                .into(),
        );
        texts.push(
            r#"{"resourceType":"Observation","code":{"coding":[{"system":"s","code":"a"},{"system":null,"code":"b"},{"code":"c"},{"system":1,"code":"d"},{"system":2.5,"code":"d"},{"system":["x","y"],"code":"e"},{"system":["x"],"code":"e"},{"system":true,"code":"f"},{"systemUri":"u","code":"g"},{"system":"s","code":{"x":1}},{"system":"a","system":"b","code":"h"},{"resourceType":"Coding","Coding":"z","code":"i"},{"resourceType":"Coding","code":"j"},{"system":"s","code":"k","display":"d","version":"v"},{"system":"s","value":"x","valueString":"y"}]},"valueString":"v","valueInteger":3,"system":"top"}"#
                .into(),
        );
        let (mut compared, mut nonempty) = (0usize, 0usize);
        for text in &texts {
            super::super::json::Parser::new().parse(text.as_bytes(), |r| {
                let res = r.expect("valid JSON");
                let ctx = Ctx {
                    resource: res,
                    constants: &consts,
                    row_index: 0,
                    aliases: None,
                    resource_key: None,
                    root: None,
                };
                // The same with the resource's members indexed, as views evaluate.
                let index = RootIndex::build(res, &names);
                let indexed = Ctx { root: Some(&index), ..ctx };
                // Every object on the tape as a focus: the resource and the nodes under it.
                let mut focuses = vec![res];
                let mut i = 0;
                while i < focuses.len() {
                    let f = focuses[i];
                    focuses.extend(
                        f.members().map(|(_, x)| x).chain(f.elements()).filter(|x| x.is_object() || x.is_array()),
                    );
                    i += 1;
                }
                for f in focuses.into_iter().filter(|f| f.is_object()) {
                    let input = [Item::Node(f, None)];
                    for (fused, nested) in &parsed {
                        let a = eval(fused, &input, &ctx).map(|c| c.into_vec());
                        let b = eval(nested, &input, &ctx).map(|c| c.into_vec());
                        assert_eq!(a, b, "{fused:?} on {f:?}");
                        let c = eval(fused, &input, &indexed).map(|c| c.into_vec());
                        assert_eq!(a, c, "{fused:?} on {f:?} with the root index");
                        compared += 1;
                        nonempty += usize::from(a.is_ok_and(|c| !c.is_empty()));
                    }
                }
            });
        }
        assert!(compared > 100_000 && nonempty > 5_000, "{compared} compared, {nonempty} non-empty");
    }

    #[test]
    fn type_names_compare_as_ignoring_ascii_case() {
        let names =
            ["", "a", "A", "dateTime", "DateTime", "DATETIME", "dateTimE", "Quantity", "date", "é", "É", "instant"];
        for a in names {
            for b in names {
                assert_eq!(type_name_eq(a, b), a.eq_ignore_ascii_case(b), "{a:?} {b:?}");
            }
        }
    }

    #[test]
    fn functions_are_resolved_when_parsed() {
        // Every name maps to its own function and back.
        for (i, (f, name, min, max)) in FUNCS.into_iter().enumerate() {
            assert_eq!(f as usize, i, "{name}: FUNCS must follow the order of Func");
            assert_eq!(f.name(), name);
            assert_eq!(FUNCS.iter().filter(|g| g.0 == f || g.1 == name).count(), 1, "{name}");
            assert!(min <= max);
        }
        match parse_nested("name.first()") {
            Ok(Expr::Call(_, f, args)) => assert!(f == Func::First && args.is_empty()),
            other => panic!("{other:?}"),
        }
        // Fused: members, `ofType()` and a final `first()` are one path; a type argument keeps
        // its member form.
        let steps = |v: &[&str]| v.iter().map(|s| Step::Member((*s).to_owned())).collect::<Vec<_>>();
        match parse("a.b.ofType(FHIR.Quantity).c.first()") {
            Ok(Expr::Path(p)) => {
                let mut want = steps(&["a", "b"]);
                want.push(Step::OfType("Quantity".into()));
                want.extend(steps(&["c"]));
                assert_eq!((p.base, p.steps, p.end), (Expr::This, want, End::First));
            }
            other => panic!("{other:?}"),
        }
        match parse("a.first().b") {
            Ok(Expr::Path(p)) => {
                assert!(matches!(p.base, Expr::Path(ref q) if q.end == End::First) && p.end == End::Items)
            }
            other => panic!("{other:?}"),
        }
        let msg = |src: &str| parse(src).err().map(|e| e.0).unwrap_or_default();
        assert_eq!(msg("name.frobnicate()"), "unsupported function `frobnicate()`");
        assert_eq!(msg("name.first(1)"), "function `first()` takes 0 to 0 arguments");
        assert_eq!(msg("iif(true)"), "function `iif()` takes 2 to 3 arguments");
    }
}
