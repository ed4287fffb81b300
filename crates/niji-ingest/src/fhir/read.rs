//! Readers: FHIR Bulk Data NDJSON (one resource type per file or mixed), Bundles (collection,
//! transaction, document, searchset, …), JSON arrays of resources and single resources.
//!
//! The record unit is one resource: an NDJSON line or a Bundle/array entry. Contained
//! resources travel inside their container and are not records of their own. NDJSON is
//! streamed line by line with one reused buffer and one reused JSON tape ([`super::json`]),
//! so memory is bounded by the longest line; a Bundle or array is one JSON document and is
//! read whole.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use super::json::{J, Parser, SyntaxError};
use crate::{IngestError, Result};

/// Where a record comes from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Location {
    /// 1-based line (NDJSON) or the line where a bad document failed to parse.
    pub line: Option<u64>,
    /// 0-based entry index inside a Bundle or JSON array.
    pub entry: Option<u64>,
}

/// A record that is not a usable resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRecord {
    /// Stable reason code.
    pub reason: &'static str,
    /// Explanation without values.
    pub detail: String,
}

/// One record of an input.
#[derive(Debug)]
pub struct Unit<'a> {
    /// Where it is.
    pub loc: Location,
    /// The resource, or why there is none.
    pub resource: std::result::Result<J<'a>, BadRecord>,
    /// The resource's `resourceType` (empty without a resource): read where the resource is
    /// checked, so that nothing after looks it up again.
    pub resource_type: &'a str,
    /// Reference aliases of the enclosing Bundle (`fullUrl` → `Type/id`).
    pub aliases: Option<&'a HashMap<String, String>>,
    /// The entry's `fullUrl`, if any.
    pub full_url: Option<&'a str>,
    /// In a document Bundle: the Composition's subject reference, the patient every entry
    /// is about (JP-CLINS Encounters in documents carry no subject of their own).
    pub document_subject: Option<&'a str>,
}

fn bad(reason: &'static str, detail: impl Into<String>) -> BadRecord {
    BadRecord { reason, detail: detail.into() }
}

/// A checked resource: the object and its `resourceType`.
type Checked<'a> = std::result::Result<(J<'a>, &'a str), BadRecord>;

fn check_resource(v: J<'_>) -> Checked<'_> {
    if !v.is_object() {
        return Err(bad("not_a_resource", "entry is not a JSON object"));
    }
    match v.get("resourceType") {
        Some(t) => match t.as_str() {
            Some(ty) if !ty.is_empty() => Ok((v, ty)),
            _ => Err(bad("not_a_resource", "`resourceType` is not a string")),
        },
        None => Err(bad("not_a_resource", "JSON object without `resourceType`")),
    }
}

impl<'a> Unit<'a> {
    fn new(
        loc: Location,
        checked: Checked<'a>,
        aliases: Option<&'a HashMap<String, String>>,
        full_url: Option<&'a str>,
        document_subject: Option<&'a str>,
    ) -> Self {
        let (resource, resource_type) = match checked {
            Ok((v, ty)) => (Ok(v), ty),
            Err(b) => (Err(b), ""),
        };
        Unit { loc, resource, resource_type, aliases, full_url, document_subject }
    }
}

fn invalid_json(e: &SyntaxError, text: &[u8]) -> BadRecord {
    let (_, col) = e.line_col(text);
    bad("invalid_json", format!("not valid JSON ({}, column {col})", e.what))
}

/// The key of a resource: `Type/id`, else its `fullUrl`.
pub fn resource_key(res: J<'_>, full_url: Option<&str>) -> Option<String> {
    let ty = res.str_of("resourceType")?;
    match res.str_of("id") {
        Some(id) => Some(format!("{ty}/{id}")),
        None => full_url.map(str::to_owned),
    }
}

fn is_ndjson_name(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_ascii_lowercase();
    name.ends_with(".ndjson") || name.ends_with(".jsonl")
}

/// Read one input file and call `f` for each record, in order.
pub fn read_input(path: &Path, f: &mut dyn FnMut(Unit<'_>) -> Result<()>) -> Result<()> {
    read_input_filtered(path, None, f)
}

/// Line filter: NDJSON lines for which it returns false are skipped without parsing. It is
/// given the 1-based line number (as in [`Location::line`]) and the trimmed line.
pub type LineFilter<'a> = &'a dyn Fn(u64, &[u8]) -> bool;

/// A [`LineFilter`] that the reading thread of [`read_input_prepared`] can share.
pub type SyncLineFilter<'a> = &'a (dyn Fn(u64, &[u8]) -> bool + Sync);

/// As [`read_input`], but NDJSON lines failing `filter` are skipped unparsed (an optimization
/// for passes that only need some resource types; documents are always read whole).
pub fn read_input_filtered(
    path: &Path,
    filter: Option<LineFilter<'_>>,
    f: &mut dyn FnMut(Unit<'_>) -> Result<()>,
) -> Result<()> {
    let read_err = |source| IngestError::Read { path: path.to_owned(), source };
    if is_ndjson_name(path) {
        return read_ndjson(BufReader::with_capacity(1 << 20, File::open(path).map_err(read_err)?), path, filter, f);
    }
    let mut bytes = Vec::new();
    File::open(path).map_err(read_err)?.read_to_end(&mut bytes).map_err(read_err)?;
    // A UTF-8 byte order mark is accepted (it is not JSON, but editors write it).
    let bom = if bytes.starts_with(b"\xef\xbb\xbf") { 3 } else { 0 };
    let mut parser = Parser::new();
    // `Ok(None)`: the document was read; `Ok(Some(e))`: it is not JSON.
    let outcome = parser.parse(&bytes[bom..], |doc| match doc {
        Ok(doc) => read_document(doc, f).map(|()| None),
        Err(e) => Ok(Some(e)),
    })?;
    let Some(mut e) = outcome else { return Ok(()) };
    e.offset += bom;
    // (Where the parser places the error depends on the kind; a first line that is a whole
    // object on its own is the sign.)
    if looks_like_ndjson(&mut parser, &bytes[bom..]) {
        return read_ndjson(BufReader::new(&bytes[..]), path, filter, f);
    }
    let loc = Location { line: Some(e.line_col(&bytes).0), entry: None };
    f(Unit::new(loc, Err(invalid_json(&e, &bytes)), None, None, None))
}

/// A `.json` file whose first line is a complete JSON object is NDJSON under another name.
fn looks_like_ndjson(parser: &mut Parser, bytes: &[u8]) -> bool {
    let first = bytes.split(|b| *b == b'\n').next().unwrap_or_default();
    parser.parse(first, |r| r.is_ok_and(J::is_object))
}

fn read_ndjson(
    r: impl BufRead,
    path: &Path,
    filter: Option<LineFilter<'_>>,
    f: &mut dyn FnMut(Unit<'_>) -> Result<()>,
) -> Result<()> {
    ndjson_lines(r, path, filter, &mut |line_no, text, parser| {
        parse_line(parser, text, |parsed| {
            f(line_unit(line_no, parsed.and_then(check_resource)))?;
            Ok(true)
        })
    })
}

/// A parsed record: the value, or why the text is not one.
type Parsed<'a> = std::result::Result<J<'a>, BadRecord>;

/// What the NDJSON loop calls per line: (line number, text, a parser for it) → go on?
type OnLine<'f> = dyn FnMut(u64, &[u8], &mut Parser) -> Result<bool> + 'f;

/// The record of an NDJSON line.
fn line_unit(line: u64, resource: Checked<'_>) -> Unit<'_> {
    Unit::new(Location { line: Some(line), entry: None }, resource, None, None, None)
}

/// A line parsed, or why it is not JSON, given to `f`.
fn parse_line<T>(parser: &mut Parser, text: &[u8], f: impl FnOnce(Parsed<'_>) -> Result<T>) -> Result<T> {
    parser.parse(text, |parsed| f(parsed.map_err(|e| invalid_json(&e, text))))
}

/// The NDJSON loop: each non-blank line that passes the filter, with its 1-based number and
/// the loop's parser (`f` parses the line, or leaves it unparsed). `f` returns false to stop
/// early. Lines are handed over where they lie in the reader's buffer (found with the
/// `memchr` crate's vectorized search); only a line that spans two fills of the buffer is
/// copied, so the input is not copied a second time line by line.
fn ndjson_lines(mut r: impl BufRead, path: &Path, filter: Option<LineFilter<'_>>, f: &mut OnLine<'_>) -> Result<()> {
    let mut parser = Parser::new();
    let mut line_no = 0u64;
    // The start of a line that the buffer's last fill ended in the middle of.
    let mut carry: Vec<u8> = Vec::new();
    let mut one = |line: &[u8], parser: &mut Parser| -> Result<bool> {
        line_no += 1;
        let text = trim_ascii(line);
        if text.is_empty() || filter.is_some_and(|keep| !keep(line_no, text)) {
            return Ok(true);
        }
        f(line_no, text, parser)
    };
    loop {
        let avail = match r.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(source) => return Err(IngestError::Read { path: path.to_owned(), source }),
        };
        if avail.is_empty() {
            // A last line without a newline.
            return if carry.is_empty() { Ok(()) } else { one(&carry, &mut parser).map(drop) };
        }
        let mut start = 0;
        for nl in memchr::memchr_iter(b'\n', avail) {
            let go_on = if carry.is_empty() {
                one(&avail[start..nl], &mut parser)?
            } else {
                carry.extend_from_slice(&avail[start..nl]);
                let go_on = one(&carry, &mut parser)?;
                carry.clear();
                go_on
            };
            if !go_on {
                return Ok(());
            }
            start = nl + 1;
        }
        carry.extend_from_slice(&avail[start..]);
        let n = avail.len();
        r.consume(n);
    }
}

/// Records per batch handed from the reading thread to the consuming one.
const PIPE_BATCH: usize = 32;
/// Batches in flight between the threads: at most this many (plus the one being filled and the
/// one being consumed) exist at once, so memory stays bounded however large the input. With 4
/// batches of 64 the threads took turns waiting on each other (on the benchmark's
/// Observations: the reader blocked on a full queue 46 ms, the consumer waited on an empty one
/// 42 ms); 16 of 32, with the graded hand-over below, cut the two waits to 18 and 12 ms.
const PIPE_DEPTH: usize = 16;

/// One NDJSON record as the reading thread hands it over.
enum Piped<P> {
    /// Parsed and prepared: the consumer needs nothing else (no second parse).
    Prepared(u64, P),
    /// Left to the consumer (see the balancing in [`read_input_prepared`]): the line's text,
    /// unparsed, which it parses and prepares itself.
    Text(u64, Vec<u8>),
    /// Not a resource, and why.
    Bad(u64, BadRecord),
}

/// Where a record is and what its document says of it: a [`Unit`] without the resource,
/// which [`read_input_prepared`] hands over as `prepare` made it.
#[derive(Debug, Clone, Copy)]
pub struct Place<'a> {
    /// Where it is.
    pub loc: &'a Location,
    /// Reference aliases of the enclosing Bundle (`fullUrl` → `Type/id`).
    pub aliases: Option<&'a HashMap<String, String>>,
    /// The entry's `fullUrl`, if any.
    pub full_url: Option<&'a str>,
    /// In a document Bundle: the Composition's subject reference.
    pub document_subject: Option<&'a str>,
}

impl<'a> Unit<'a> {
    /// The unit's place.
    pub fn place(&self) -> Place<'_> {
        Place {
            loc: &self.loc,
            aliases: self.aliases,
            full_url: self.full_url,
            document_subject: self.document_subject,
        }
    }
}

/// The consumer of [`read_input_prepared`]: a record's place and what `prepare` made of it
/// (or why it is not a resource).
pub type OnPrepared<'f, P> = dyn FnMut(Place<'_>, std::result::Result<&mut P, BadRecord>) -> Result<()> + 'f;

/// As [`read_input_filtered`], with a `prepare` step run exactly once on each resource; `f`
/// gets the record's [`Place`] and what `prepare` made of it (or why it is not a resource),
/// never the parsed resource itself: whatever `f` needs of it, `prepare` extracts.
///
/// With `pipelined`, NDJSON is read, parsed and prepared on a second thread that runs ahead
/// of `f` by at most a few hundred records (bounded memory), so reading, parsing and
/// `prepare` overlap with `f` on two cores; `f` still sees every record, in order, exactly as
/// without it, and a prepared record is not parsed twice. The work is balanced: when the
/// consuming thread runs dry (no batch waiting), the reading thread leaves some records
/// unparsed (it passes their text) and the consuming thread parses and prepares them
/// itself, so neither thread waits on the other for long. The records go back to the reading
/// thread to be freed there (memory freed by the thread that allocated it is cheaper to free,
/// and keeps the allocator's arenas apart). Documents (Bundles, arrays) are read whole and
/// prepared inline.
pub fn read_input_prepared<P: Send>(
    path: &Path,
    filter: Option<SyncLineFilter<'_>>,
    pipelined: bool,
    prepare: &(dyn Fn(&Unit<'_>) -> P + Sync),
    f: &mut OnPrepared<'_, P>,
) -> Result<()> {
    if !pipelined || !is_ndjson_name(path) {
        return read_input_filtered(path, filter.map(|g| g as LineFilter<'_>), &mut |u| hand_over(&u, prepare, f));
    }
    let file = File::open(path).map_err(|source| IngestError::Read { path: path.to_owned(), source })?;
    let reader = BufReader::with_capacity(1 << 20, file);
    // Batches sent and not yet taken by the consumer: 0 means it is waiting for work.
    let queued = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<Piped<P>>>(PIPE_DEPTH);
        // Consumed batches come back to be freed and reused; at most the batches in flight.
        let (back_tx, back_rx) = std::sync::mpsc::channel::<Vec<Piped<P>>>();
        let queued = &queued;
        let producer = scope.spawn(move || {
            let mut batch = Vec::with_capacity(PIPE_BATCH);
            let mut seq = 0u64;
            // Line buffers of records the consumer prepared itself, reused.
            let mut spare: Vec<Vec<u8>> = Vec::new();
            let read = ndjson_lines(reader, path, filter.map(|g| g as LineFilter<'_>), &mut |line, text, parser| {
                seq += 1;
                // The consumer waiting: it parses and prepares every second line; one batch
                // waiting: every third; two or three: every sixth; more: none. A line left to
                // it is not parsed here.
                let leave = match queued.load(std::sync::atomic::Ordering::Relaxed) {
                    0 => seq.is_multiple_of(2),
                    1 => seq.is_multiple_of(3),
                    2 | 3 => seq.is_multiple_of(6),
                    _ => false,
                };
                let piped = if leave {
                    let mut owned = spare.pop().unwrap_or_default();
                    owned.clear();
                    owned.extend_from_slice(text);
                    Piped::Text(line, owned)
                } else {
                    parse_line(parser, text, |parsed| {
                        let unit = line_unit(line, parsed.and_then(check_resource));
                        Ok(match unit.resource {
                            Ok(_) => Piped::Prepared(line, prepare(&unit)),
                            Err(b) => Piped::Bad(line, b),
                        })
                    })?
                };
                batch.push(piped);
                if batch.len() < PIPE_BATCH {
                    return Ok(true);
                }
                let next = match back_rx.try_recv() {
                    Ok(mut used) => {
                        spare.extend(used.drain(..).filter_map(|p: Piped<P>| match p {
                            Piped::Text(_, t) => Some(t),
                            _ => None,
                        }));
                        used
                    }
                    Err(_) => Vec::with_capacity(PIPE_BATCH),
                };
                // A closed channel means the consumer stopped (on an error it reports).
                queued.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Ok(tx.send(std::mem::replace(&mut batch, next)).is_ok())
            });
            // The records read before a read error are still consumed, as without the thread.
            if !batch.is_empty() {
                queued.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let _ = tx.send(batch);
            }
            read
        });
        let mut consumed = Ok(());
        let mut parser = Parser::new();
        'batches: for mut batch in &rx {
            queued.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            for p in &mut batch {
                let done = match p {
                    Piped::Prepared(line, prepared) => {
                        let loc = Location { line: Some(*line), entry: None };
                        f(place(&loc), Ok(prepared))
                    }
                    // Left unparsed by the reading thread: parsed and prepared here.
                    Piped::Text(line, text) => parse_line(&mut parser, text, |parsed| {
                        hand_over(&line_unit(*line, parsed.and_then(check_resource)), prepare, f)
                    }),
                    Piped::Bad(line, b) => {
                        let loc = Location { line: Some(*line), entry: None };
                        f(place(&loc), Err(b.clone()))
                    }
                };
                if let Err(e) = done {
                    consumed = Err(e);
                    break 'batches;
                }
            }
            // Once the reader has finished, what is left is freed here.
            let _ = back_tx.send(batch);
        }
        drop(rx);
        let produced = producer.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        consumed.and(produced)
    })
}

/// `f` given a record's place and its prepared resource, or why it is not a resource.
fn hand_over<P>(u: &Unit<'_>, prepare: &(dyn Fn(&Unit<'_>) -> P + Sync), f: &mut OnPrepared<'_, P>) -> Result<()> {
    match &u.resource {
        Ok(_) => f(u.place(), Ok(&mut prepare(u))),
        Err(b) => f(u.place(), Err(b.clone())),
    }
}

/// The place of an NDJSON line.
fn place(loc: &Location) -> Place<'_> {
    Place { loc, aliases: None, full_url: None, document_subject: None }
}

fn trim_ascii(b: &[u8]) -> &[u8] {
    let b = b.strip_prefix(b"\xef\xbb\xbf").unwrap_or(b);
    let start = b.iter().position(|c| !c.is_ascii_whitespace()).unwrap_or(b.len());
    let end = b.iter().rposition(|c| !c.is_ascii_whitespace()).map_or(start, |e| e + 1);
    &b[start..end]
}

/// Walk a parsed document: a Bundle, an array, or one resource.
pub fn read_document(doc: J<'_>, f: &mut dyn FnMut(Unit<'_>) -> Result<()>) -> Result<()> {
    if doc.is_array() {
        for (i, v) in doc.elements().enumerate() {
            let loc = Location { line: None, entry: Some(i as u64) };
            f(Unit::new(loc, check_resource(v), None, None, None))?;
        }
        return Ok(());
    }
    if doc.str_of("resourceType") != Some("Bundle") {
        return f(Unit::new(Location::default(), check_resource(doc), None, None, None));
    }
    let entries = || doc.array_of("entry");
    let mut aliases = HashMap::new();
    for e in entries() {
        if let (Some(url), Some(res)) = (e.str_of("fullUrl"), e.get("resource"))
            && let Some(key) = resource_key(res, Some(url))
        {
            aliases.insert(url.to_owned(), key);
        }
    }
    let document_subject = if doc.str_of("type") == Some("document") {
        entries()
            .next()
            .and_then(|e| e.get("resource"))
            .filter(|r| r.str_of("resourceType") == Some("Composition"))
            .and_then(|c| c.get("subject")?.str_of("reference"))
    } else {
        None
    };
    for (i, e) in entries().enumerate() {
        let loc = Location { line: None, entry: Some(i as u64) };
        let full_url = e.str_of("fullUrl");
        let resource = match e.get("resource") {
            Some(r) => check_resource(r),
            None => Err(bad("missing_resource", "Bundle entry without `resource`")),
        };
        f(Unit::new(loc, resource, Some(&aliases), full_url, document_subject))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The NDJSON loop's lines against a plain split of the text, whatever the buffer size:
    /// across buffer boundaries, empty lines, CRLF, a last line without a newline, an empty
    /// input.
    #[test]
    fn lines_are_numbered_and_trimmed_whatever_the_buffer_size() {
        let texts: [&[u8]; 6] =
            [b"", b"a\n\nbc\r\ndef", b"\n\n", b"{\"x\":1}\n{\"y\":22}\n", b"  x  \n\ty\r\n\n", b"abcdefgh\nij"];
        for text in texts {
            // Every line, numbered from 1 (a newline at the end starts no line), trimmed, blank
            // ones skipped.
            let mut pieces: Vec<&[u8]> = text.split(|b| *b == b'\n').collect();
            if text.ends_with(b"\n") || text.is_empty() {
                pieces.pop();
            }
            let want: Vec<(u64, Vec<u8>)> =
                (1..).zip(pieces).map(|(n, l)| (n, trim_ascii(l).to_vec())).filter(|(_, l)| !l.is_empty()).collect();
            for cap in [1, 2, 3, 5, 64] {
                let mut got = Vec::new();
                ndjson_lines(BufReader::with_capacity(cap, text), Path::new("t"), None, &mut |n, t, _| {
                    got.push((n, t.to_vec()));
                    Ok(true)
                })
                .expect("read");
                assert_eq!(got, want, "{text:?} with a buffer of {cap}");
                // Stopping early stops at that line.
                let mut seen = 0;
                ndjson_lines(BufReader::with_capacity(cap, text), Path::new("t"), None, &mut |_, _, _| {
                    seen += 1;
                    Ok(false)
                })
                .expect("read");
                assert_eq!(seen, want.len().min(1), "{text:?} with a buffer of {cap}");
            }
        }
    }

    fn collect(path: &Path) -> Vec<(Location, std::result::Result<String, &'static str>)> {
        let mut out = Vec::new();
        read_input(path, &mut |u| {
            out.push((
                u.loc.clone(),
                u.resource.map(|r| r.str_of("resourceType").unwrap_or_default().to_owned()).map_err(|b| b.reason),
            ));
            Ok(())
        })
        .expect("read");
        out
    }

    #[test]
    fn pipelined_reading_prepares_every_resource_once_in_order() {
        let dir = tempfile::tempdir().expect("tmp");
        let nd = dir.path().join("many.ndjson");
        let mut text = String::new();
        for i in 0..3000 {
            if i % 500 == 7 {
                text.push_str("{not json\n");
            } else {
                text.push_str(&format!("{{\"resourceType\":\"Observation\",\"id\":\"o{i}\"}}\n"));
            }
        }
        std::fs::write(&nd, text).expect("write");
        let calls = std::sync::atomic::AtomicUsize::new(0);
        let prepare = |u: &Unit<'_>| {
            calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            u.resource.as_ref().ok().and_then(|r| r.str_of("id")).map(str::to_owned)
        };
        let mut seen = Vec::new();
        read_input_prepared(&nd, None, true, &prepare, &mut |place, p| {
            let line = place.loc.line.expect("line");
            match p {
                Ok(Some(id)) => assert_eq!(*id, format!("o{}", line - 1)),
                Err(b) => {
                    assert_eq!(b.reason, "invalid_json");
                    assert_eq!((line - 1) % 500, 7, "line {line}");
                }
                Ok(None) => panic!("line {line}: prepared without an id"),
            }
            seen.push(line);
            Ok(())
        })
        .expect("read");
        assert_eq!(seen, (1..=3000).collect::<Vec<u64>>());
        // Each resource prepared exactly once, by one thread or the other.
        assert_eq!(calls.into_inner(), 3000 - 6);
    }

    #[test]
    fn ndjson_lines_bundles_and_arrays() {
        let dir = tempfile::tempdir().expect("tmp");
        let nd = dir.path().join("x.ndjson");
        std::fs::write(&nd, "{\"resourceType\":\"Patient\"}\n\n{broken\n[1]\n").expect("write");
        let got = collect(&nd);
        assert_eq!(got.len(), 3);
        assert_eq!(got[1].0.line, Some(3));
        assert_eq!(got[1].1, Err("invalid_json"));
        assert_eq!(got[2].1, Err("not_a_resource"));
        let b = dir.path().join("b.json");
        std::fs::write(&b, r#"{"resourceType":"Bundle","type":"collection","entry":[{"fullUrl":"urn:uuid:1","resource":{"resourceType":"Patient"}},{}]}"#).expect("write");
        let got = collect(&b);
        assert_eq!(got[0].1, Ok("Patient".to_owned()));
        assert_eq!(got[1].0.entry, Some(1));
        assert_eq!(got[1].1, Err("missing_resource"));
        let bad = dir.path().join("bad.json");
        std::fs::write(&bad, "{\n \"resourceType\": \n").expect("write");
        let got = collect(&bad);
        assert_eq!(got[0].1, Err("invalid_json"));
        assert!(got[0].0.line.is_some_and(|l| l >= 2), "the error is placed after line 1: {:?}", got[0].0);
        // A byte order mark before a document is accepted.
        let bom = dir.path().join("bom.json");
        std::fs::write(&bom, "\u{feff}{\"resourceType\":\"Patient\",\"id\":\"a\"}").expect("write");
        assert_eq!(collect(&bom)[0].1, Ok("Patient".to_owned()));
        // A `.json` file of several lines of resources is NDJSON under another name.
        let nd2 = dir.path().join("lines.json");
        std::fs::write(&nd2, "{\"resourceType\":\"Patient\"}\n{\"resourceType\":\"Condition\"}\n").expect("write");
        let got = collect(&nd2);
        assert_eq!(got.len(), 2);
        assert_eq!((got[1].0.line, got[1].1.clone()), (Some(2), Ok("Condition".to_owned())));
    }
}
