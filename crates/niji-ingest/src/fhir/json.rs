//! Parsed JSON without a tree of allocations: the input is parsed by `simd-json` into a flat
//! tape (one 24-byte node per value, key and container; strings are slices of the input,
//! unescaped in place), and [`J`] is a value on that tape: the node and everything under it.
//!
//! A [`Parser`] keeps its buffers and tape between documents, so reading an NDJSON file
//! allocates nothing per line once the longest line has been seen. Looking a member up scans
//! the object's keys, skipping each value's subtree in one step; FHIR objects are small, so
//! this beats hashing.

use simd_json::{Buffers, Node, StaticNode, Tape};

/// A JSON value on a parsed tape.
#[derive(Clone, Copy)]
pub struct J<'a>(&'a [Node<'a>]);

impl std::fmt::Debug for J<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.to_value())
    }
}

/// Structural equality (as parsed JSON values; object member order is ignored).
impl PartialEq for J<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.to_value() == other.to_value()
    }
}

/// What a value is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind<'a> {
    /// `null`
    Null,
    /// `true` / `false`
    Bool(bool),
    /// A number that is an integer within `i64`.
    Int(i64),
    /// Any other number.
    Dec(f64),
    /// A string.
    Str(&'a str),
    /// An array.
    Array,
    /// An object.
    Object,
}

/// Nodes a value spans on the tape (itself included).
#[inline]
fn span(n: &Node<'_>) -> usize {
    match n {
        Node::Object { count, .. } | Node::Array { count, .. } => count + 1,
        _ => 1,
    }
}

impl<'a> J<'a> {
    /// What the value is.
    #[inline]
    pub fn kind(self) -> Kind<'a> {
        match self.0[0] {
            Node::String(s) => Kind::Str(s),
            Node::Object { .. } => Kind::Object,
            Node::Array { .. } => Kind::Array,
            Node::Static(StaticNode::Null) => Kind::Null,
            Node::Static(StaticNode::Bool(b)) => Kind::Bool(b),
            Node::Static(StaticNode::I64(i)) => Kind::Int(i),
            Node::Static(StaticNode::U64(u)) => i64::try_from(u).map_or(Kind::Dec(u as f64), Kind::Int),
            Node::Static(StaticNode::F64(f)) => Kind::Dec(f),
        }
    }

    /// The string, if the value is one.
    #[inline]
    pub fn as_str(self) -> Option<&'a str> {
        match self.0[0] {
            Node::String(s) => Some(s),
            _ => None,
        }
    }

    /// Whether the value is `null`.
    #[inline]
    pub fn is_null(self) -> bool {
        matches!(self.0[0], Node::Static(StaticNode::Null))
    }

    /// Whether the value is an integer above `i64::MAX` (reported as [`Kind::Dec`]).
    #[inline]
    pub fn is_unsigned_integer(self) -> bool {
        matches!(self.0[0], Node::Static(StaticNode::U64(u)) if i64::try_from(u).is_err())
    }

    /// Whether `self` and `other` are the same node of the same tape (not merely equal).
    #[inline]
    pub fn same(self, other: J<'_>) -> bool {
        std::ptr::eq(self.0.as_ptr().cast::<u8>(), other.0.as_ptr().cast::<u8>())
    }

    /// Whether the value is an object.
    #[inline]
    pub fn is_object(self) -> bool {
        matches!(self.0[0], Node::Object { .. })
    }

    /// Whether the value is an array.
    #[inline]
    pub fn is_array(self) -> bool {
        matches!(self.0[0], Node::Array { .. })
    }

    /// The members of an object, in input order (none for other values).
    #[inline]
    pub fn members(self) -> Members<'a> {
        match self.0[0] {
            Node::Object { len, count } => Members { rest: &self.0[1..=count], left: len },
            _ => Members { rest: &[], left: 0 },
        }
    }

    /// The elements of an array (none for other values).
    #[inline]
    pub fn elements(self) -> Elements<'a> {
        match self.0[0] {
            Node::Array { len, count } => Elements { rest: &self.0[1..=count], left: len },
            _ => Elements { rest: &[], left: 0 },
        }
    }

    /// A member of an object. With a key given twice the last one counts, as in most JSON
    /// readers.
    #[inline]
    pub fn get(self, key: &str) -> Option<J<'a>> {
        let mut hit = None;
        for (k, v) in self.members() {
            if key_eq(k, key) {
                hit = Some(v);
            }
        }
        hit
    }

    /// A string member of an object.
    #[inline]
    pub fn str_of(self, key: &str) -> Option<&'a str> {
        self.get(key).and_then(J::as_str)
    }

    /// The elements of an array member (none when missing or not an array).
    #[inline]
    pub fn array_of(self, key: &str) -> Elements<'a> {
        self.get(key).map_or(Elements { rest: &[], left: 0 }, J::elements)
    }

    /// The value as a `serde_json` tree (for output of complex values; not on hot paths).
    pub fn to_value(self) -> serde_json::Value {
        use serde_json::Value;
        match self.kind() {
            Kind::Null => Value::Null,
            Kind::Bool(b) => Value::Bool(b),
            Kind::Int(i) => Value::from(i),
            Kind::Dec(d) => match self.0[0] {
                Node::Static(StaticNode::U64(u)) => Value::from(u),
                _ => serde_json::Number::from_f64(d).map_or(Value::Null, Value::Number),
            },
            Kind::Str(s) => Value::String(s.to_owned()),
            Kind::Array => Value::Array(self.elements().map(J::to_value).collect()),
            Kind::Object => Value::Object(self.members().map(|(k, v)| (k.to_owned(), v.to_value())).collect()),
        }
    }
}

/// Key equality for short keys: length and first byte are compared inline before the bytes
/// (most keys of an object differ in one of them, and a `memcmp` call costs more than a
/// short key).
#[inline]
pub fn key_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.as_bytes().first() == b.as_bytes().first() && same_bytes(a.as_bytes(), b.as_bytes())
}

/// Equality of two byte strings of the same length: up to 16 bytes as two overlapping words
/// each, inline (FHIR member names are short), longer ones by `==`.
#[inline]
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    let w8 = |x: &[u8], at: usize| x.get(at..at + 8).and_then(|s| s.try_into().ok()).map(u64::from_ne_bytes);
    let w4 = |x: &[u8], at: usize| x.get(at..at + 4).and_then(|s| s.try_into().ok()).map(u32::from_ne_bytes);
    match n {
        8..=16 => w8(a, 0) == w8(b, 0) && w8(a, n - 8) == w8(b, n - 8),
        4..=7 => w4(a, 0) == w4(b, 0) && w4(a, n - 4) == w4(b, n - 4),
        _ => a == b,
    }
}

#[cfg(test)]
mod key_tests {
    use super::key_eq;

    /// Every length up to 40 against a copy and against each one-byte change of it.
    #[test]
    fn keys_are_equal_exactly_when_their_bytes_are() {
        for n in 0..40usize {
            let a: String = (0..n).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
            assert!(key_eq(&a, &a.clone()), "{n}");
            for i in 0..n {
                let mut b = a.clone().into_bytes();
                b[i] = b'Z';
                assert!(!key_eq(&a, std::str::from_utf8(&b).unwrap_or_default()), "{n} at {i}");
            }
            assert!(!key_eq(&a, &format!("{a}x")));
        }
    }
}

/// Iterator over an object's members.
#[derive(Clone)]
pub struct Members<'a> {
    rest: &'a [Node<'a>],
    left: usize,
}

impl<'a> Iterator for Members<'a> {
    type Item = (&'a str, J<'a>);

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let key = match self.rest.first()? {
            Node::String(k) => *k,
            _ => return None,
        };
        let n = span(self.rest.get(1)?);
        let (v, rest) = self.rest[1..].split_at(n);
        self.rest = rest;
        Some((key, J(v)))
    }
}

/// Iterator over an array's elements.
#[derive(Clone)]
pub struct Elements<'a> {
    rest: &'a [Node<'a>],
    left: usize,
}

impl<'a> Iterator for Elements<'a> {
    type Item = J<'a>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let n = span(self.rest.first()?);
        let (v, rest) = self.rest.split_at(n);
        self.rest = rest;
        Some(J(v))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

/// Why a text is not JSON: a description and the 0-based byte offset where it was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    /// Byte offset into the text.
    pub offset: usize,
    /// What is wrong (no input content).
    pub what: String,
}

impl SyntaxError {
    /// 1-based line and column of the error in `text`.
    pub fn line_col(&self, text: &[u8]) -> (u64, u64) {
        let before = &text[..self.offset.min(text.len())];
        let line = before.iter().filter(|&&b| b == b'\n').count() as u64 + 1;
        let col = before.iter().rev().take_while(|&&b| b != b'\n').count() as u64 + 1;
        (line, col)
    }
}

/// Reusable parsing state: the padded input copy, simd-json's buffers and the tape.
pub struct Parser {
    input: Vec<u8>,
    buffers: Buffers,
    tape: Option<Tape<'static>>,
}

impl Default for Parser {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Parser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Parser").finish_non_exhaustive()
    }
}

/// Deepest nesting accepted (serde_json's default recursion limit).
const MAX_DEPTH: usize = 128;

impl Parser {
    /// A parser with empty buffers.
    pub fn new() -> Self {
        Self { input: Vec::new(), buffers: Buffers::with_max_depth(0, MAX_DEPTH), tape: Some(Tape::null()) }
    }

    /// Parse `text` and hand the value (or why it is not JSON) to `f`. The value lives as
    /// long as the call; the buffers are kept for the next document.
    pub fn parse<R>(&mut self, text: &[u8], f: impl FnOnce(Result<J<'_>, SyntaxError>) -> R) -> R {
        self.input.clear();
        self.input.extend_from_slice(text);
        self.input.resize(text.len() + simd_json::INPUT_PADDING, 0);
        let mut tape: Tape<'_> = self.tape.take().unwrap_or_else(Tape::null).reset();
        let parsed = simd_json::fill_tape_padded(&mut self.input, text.len(), &mut self.buffers, &mut tape);
        let out = match parsed {
            Ok(()) => match tape.0.first() {
                Some(_) => f(Ok(J(&tape.0))),
                None => f(Err(SyntaxError { offset: 0, what: "empty input".into() })),
            },
            Err(e) => f(Err(SyntaxError { offset: e.index().min(text.len()), what: describe(e.error()).to_owned() })),
        };
        self.tape = Some(tape.reset());
        out
    }
}

/// A fixed description of a parse error (never input content).
fn describe(e: &simd_json::ErrorType) -> &'static str {
    use simd_json::ErrorType as E;
    match e {
        E::Eof => "unexpected end of input",
        E::TrailingData => "data after the JSON value",
        E::InvalidUtf8 => "not UTF-8",
        E::InvalidEscape | E::InvalidUnicodeEscape | E::InvalidUnicodeCodepoint => "invalid escape in a string",
        E::UnterminatedString => "unterminated string",
        E::InvalidNumber | E::InvalidExponent | E::Overflow => "invalid number",
        E::DepthLimitExceeded => "nested too deeply",
        E::ExpectedObjectColon => "expected `:` after an object key",
        E::ExpectedMapComma | E::ExpectedMapEnd => "expected `,` or `}` in an object",
        E::ExpectedArrayComma => "expected `,` or `]` in an array",
        E::ExpectedObjectKey | E::KeyMustBeAString | E::BadKeyType => "expected a string key in an object",
        E::ExpectedObjectContent | E::ExpectedArrayContent => "expected a value",
        E::InputTooLarge => "document larger than 4 GiB",
        _ => "syntax error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with<R>(text: &str, f: impl FnOnce(J<'_>) -> R) -> R {
        Parser::new().parse(text.as_bytes(), |r| f(r.expect("valid JSON")))
    }

    #[test]
    fn members_elements_and_kinds() {
        with(r#"{"a":[1,2.5,"x\n",{"b":null}],"c":true,"a2":{},"big":18446744073709551615}"#, |j| {
            assert!(j.is_object());
            let keys: Vec<&str> = j.members().map(|(k, _)| k).collect();
            assert_eq!(keys, ["a", "c", "a2", "big"]);
            let a: Vec<Kind<'_>> = j.array_of("a").map(J::kind).collect();
            assert_eq!(a[..3], [Kind::Int(1), Kind::Dec(2.5), Kind::Str("x\n")]);
            assert_eq!(a[3], Kind::Object);
            assert!(j.get("a").and_then(|a| a.elements().nth(3)).and_then(|o| o.get("b")).is_some_and(J::is_null));
            assert_eq!(j.get("c").map(J::kind), Some(Kind::Bool(true)));
            assert_eq!(j.get("a2").map(|o| o.members().count()), Some(0));
            assert_eq!(j.get("big").map(J::kind), Some(Kind::Dec(18446744073709551615.0)));
            assert_eq!(
                j.to_value(),
                serde_json::json!({"a":[1,2.5,"x\n",{"b":null}],"c":true,"a2":{},"big":18446744073709551615u64})
            );
        });
    }

    #[test]
    fn the_last_of_a_repeated_key_counts() {
        with(r#"{"k":1,"k":2}"#, |j| assert_eq!(j.get("k").map(J::kind), Some(Kind::Int(2))));
    }

    #[test]
    fn syntax_errors_have_a_place_and_the_parser_recovers() {
        let mut p = Parser::new();
        let text = b"{\n \"a\": \n";
        let e = p.parse(text, |r| r.err()).expect("an error");
        assert!(e.line_col(text).0 >= 2, "{e:?}");
        assert!(p.parse(b"[1", |r| r.is_err()));
        assert!(p.parse(b"{\"a\":1} x", |r| r.is_err()));
        assert!(p.parse(b"", |r| r.is_err()));
        assert_eq!(
            p.parse(br#"{"x":"y"}"#, |r| r.ok().and_then(|j| j.str_of("x")).map(str::to_owned)),
            Some("y".into())
        );
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        assert!(p.parse(deep.as_bytes(), |r| r.is_err()));
        let ok = format!("{}{}", "[".repeat(100), "]".repeat(100));
        assert!(p.parse(ok.as_bytes(), |r| r.is_ok()));
    }
}
