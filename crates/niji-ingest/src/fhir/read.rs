//! Readers: FHIR Bulk Data NDJSON (one resource type per file or mixed), Bundles (collection,
//! transaction, document, searchset, …), JSON arrays of resources and single resources.
//!
//! The record unit is one resource: an NDJSON line or a Bundle/array entry. Contained
//! resources travel inside their container and are not records of their own. NDJSON is
//! streamed line by line with one reused buffer, so memory is bounded by the longest line;
//! a Bundle or array is one JSON document and is read whole.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use serde_json::Value;

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
    pub resource: std::result::Result<&'a Value, BadRecord>,
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

fn check_resource(v: &Value) -> std::result::Result<&Value, BadRecord> {
    match v {
        Value::Object(m) => match m.get("resourceType") {
            Some(Value::String(s)) if !s.is_empty() => Ok(v),
            Some(_) => Err(bad("not_a_resource", "`resourceType` is not a string")),
            None => Err(bad("not_a_resource", "JSON object without `resourceType`")),
        },
        _ => Err(bad("not_a_resource", "entry is not a JSON object")),
    }
}

/// The key of a resource: `Type/id`, else its `fullUrl`.
pub fn resource_key(res: &Value, full_url: Option<&str>) -> Option<String> {
    let ty = res.get("resourceType").and_then(Value::as_str)?;
    match res.get("id").and_then(Value::as_str) {
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
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(doc) => read_document(&doc, f),
        Err(e) if e.classify() == serde_json::error::Category::Syntax && e.line() > 1 && looks_like_ndjson(&bytes) => {
            read_ndjson(BufReader::new(&bytes[..]), path, filter, f)
        }
        Err(e) => f(Unit {
            loc: Location { line: Some(e.line() as u64), entry: None },
            resource: Err(bad("invalid_json", format!("not valid JSON (column {})", e.column()))),
            aliases: None,
            full_url: None,
            document_subject: None,
        }),
    }
}

/// A `.json` file whose first line is a complete JSON object is NDJSON under another name.
fn looks_like_ndjson(bytes: &[u8]) -> bool {
    let first = bytes.split(|b| *b == b'\n').next().unwrap_or_default();
    serde_json::from_slice::<Value>(first).is_ok_and(|v| v.is_object())
}

fn read_ndjson(
    r: impl BufRead,
    path: &Path,
    filter: Option<LineFilter<'_>>,
    f: &mut dyn FnMut(Unit<'_>) -> Result<()>,
) -> Result<()> {
    ndjson_lines(r, path, filter, &mut |line_no, parsed| {
        let loc = Location { line: Some(line_no), entry: None };
        let resource = match &parsed {
            Ok(v) => check_resource(v),
            Err(b) => Err(b.clone()),
        };
        f(Unit { loc, resource, aliases: None, full_url: None, document_subject: None })?;
        Ok(true)
    })
}

/// The NDJSON loop: each non-blank line that passes the filter, parsed, with its 1-based
/// number. `f` returns false to stop early.
fn ndjson_lines(
    mut r: impl BufRead,
    path: &Path,
    filter: Option<LineFilter<'_>>,
    f: &mut dyn FnMut(u64, std::result::Result<Value, BadRecord>) -> Result<bool>,
) -> Result<()> {
    let mut buf = Vec::with_capacity(1 << 16);
    let mut line_no = 0u64;
    loop {
        buf.clear();
        let n = r.read_until(b'\n', &mut buf).map_err(|source| IngestError::Read { path: path.to_owned(), source })?;
        if n == 0 {
            return Ok(());
        }
        line_no += 1;
        let text = trim_ascii(&buf);
        if text.is_empty() || filter.is_some_and(|keep| !keep(line_no, text)) {
            continue;
        }
        let parsed = serde_json::from_slice::<Value>(text)
            .map_err(|e| bad("invalid_json", format!("not valid JSON (column {})", e.column())));
        if !f(line_no, parsed)? {
            return Ok(());
        }
    }
}

/// Records per batch handed from the reading thread to the consuming one.
const PIPE_BATCH: usize = 64;
/// Batches in flight between the threads: at most this many (plus the one being filled and the
/// one being consumed) exist at once, so memory stays bounded however large the input.
const PIPE_DEPTH: usize = 4;

/// One NDJSON record read, parsed and prepared on the reading thread.
struct Piped<P> {
    line: u64,
    /// The parsed resource, or why there is none (the result of `check_resource`, owned).
    resource: std::result::Result<Value, BadRecord>,
    prepared: Option<P>,
}

/// As [`read_input_filtered`], with a `prepare` step run on each resource before `f` sees it
/// (`f` gets its result, to read or take; `None` for records that are not resources).
///
/// With `pipelined`, NDJSON is read, parsed and prepared on a second thread that runs ahead
/// of `f` by at most a few hundred records (bounded memory), so reading, parsing and
/// `prepare` overlap with `f` on two cores; `f` still sees every record, in order, exactly as
/// without it. The records go back to the reading thread to be freed there (memory freed by
/// the thread that allocated it is cheaper to free, and keeps the allocator's arenas apart).
/// Documents (Bundles, arrays) are read whole and prepared inline.
pub fn read_input_prepared<P: Send>(
    path: &Path,
    filter: Option<SyncLineFilter<'_>>,
    pipelined: bool,
    prepare: &(dyn Fn(&Unit<'_>) -> P + Sync),
    f: &mut dyn FnMut(Unit<'_>, Option<&mut P>) -> Result<()>,
) -> Result<()> {
    if !pipelined || !is_ndjson_name(path) {
        return read_input_filtered(path, filter.map(|g| g as LineFilter<'_>), &mut |u| {
            let mut p = u.resource.is_ok().then(|| prepare(&u));
            f(u, p.as_mut())
        });
    }
    let file = File::open(path).map_err(|source| IngestError::Read { path: path.to_owned(), source })?;
    let reader = BufReader::with_capacity(1 << 20, file);
    std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<Piped<P>>>(PIPE_DEPTH);
        // Consumed batches come back to be freed and reused; at most the batches in flight.
        let (back_tx, back_rx) = std::sync::mpsc::channel::<Vec<Piped<P>>>();
        let producer = scope.spawn(move || {
            let mut batch = Vec::with_capacity(PIPE_BATCH);
            let next_batch = || match back_rx.try_recv() {
                Ok(mut used) => {
                    used.clear();
                    used
                }
                Err(_) => Vec::with_capacity(PIPE_BATCH),
            };
            let read = ndjson_lines(reader, path, filter.map(|g| g as LineFilter<'_>), &mut |line, parsed| {
                let resource = match parsed {
                    Ok(v) => match check_resource(&v) {
                        Ok(_) => Ok(v),
                        Err(b) => Err(b),
                    },
                    Err(b) => Err(b),
                };
                let prepared = resource.as_ref().ok().map(|v| {
                    let loc = Location { line: Some(line), entry: None };
                    prepare(&Unit { loc, resource: Ok(v), aliases: None, full_url: None, document_subject: None })
                });
                batch.push(Piped { line, resource, prepared });
                if batch.len() < PIPE_BATCH {
                    return Ok(true);
                }
                // A closed channel means the consumer stopped (on an error it reports).
                Ok(tx.send(std::mem::replace(&mut batch, next_batch())).is_ok())
            });
            // The records read before a read error are still consumed, as without the thread.
            if !batch.is_empty() {
                let _ = tx.send(batch);
            }
            read
        });
        let mut consumed = Ok(());
        'batches: for mut batch in &rx {
            for p in &mut batch {
                let loc = Location { line: Some(p.line), entry: None };
                let unit = Unit {
                    loc,
                    resource: p.resource.as_ref().map_err(Clone::clone),
                    aliases: None,
                    full_url: None,
                    document_subject: None,
                };
                if let Err(e) = f(unit, p.prepared.as_mut()) {
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

fn trim_ascii(b: &[u8]) -> &[u8] {
    let b = b.strip_prefix(b"\xef\xbb\xbf").unwrap_or(b);
    let start = b.iter().position(|c| !c.is_ascii_whitespace()).unwrap_or(b.len());
    let end = b.iter().rposition(|c| !c.is_ascii_whitespace()).map_or(start, |e| e + 1);
    &b[start..end]
}

/// Walk a parsed document: a Bundle, an array, or one resource.
pub fn read_document(doc: &Value, f: &mut dyn FnMut(Unit<'_>) -> Result<()>) -> Result<()> {
    match doc {
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                let loc = Location { line: None, entry: Some(i as u64) };
                f(Unit { loc, resource: check_resource(v), aliases: None, full_url: None, document_subject: None })?;
            }
            Ok(())
        }
        Value::Object(m) if m.get("resourceType").and_then(Value::as_str) == Some("Bundle") => {
            let entries = m.get("entry").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
            let mut aliases = HashMap::new();
            for e in entries {
                if let (Some(url), Some(res)) = (e.get("fullUrl").and_then(Value::as_str), e.get("resource"))
                    && let Some(key) = resource_key(res, Some(url))
                {
                    aliases.insert(url.to_owned(), key);
                }
            }
            let document_subject = if m.get("type").and_then(Value::as_str) == Some("document") {
                entries
                    .first()
                    .and_then(|e| e.get("resource"))
                    .filter(|r| r.get("resourceType").and_then(Value::as_str) == Some("Composition"))
                    .and_then(|c| c.get("subject")?.get("reference")?.as_str())
            } else {
                None
            };
            for (i, e) in entries.iter().enumerate() {
                let loc = Location { line: None, entry: Some(i as u64) };
                let full_url = e.get("fullUrl").and_then(Value::as_str);
                let resource = match e.get("resource") {
                    Some(r) => check_resource(r),
                    None => Err(bad("missing_resource", "Bundle entry without `resource`")),
                };
                f(Unit { loc, resource, aliases: Some(&aliases), full_url, document_subject })?;
            }
            Ok(())
        }
        other => f(Unit {
            loc: Location::default(),
            resource: check_resource(other),
            aliases: None,
            full_url: None,
            document_subject: None,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(path: &Path) -> Vec<(Location, std::result::Result<String, &'static str>)> {
        let mut out = Vec::new();
        read_input(path, &mut |u| {
            out.push((
                u.loc.clone(),
                u.resource.map(|r| r["resourceType"].as_str().unwrap_or_default().to_owned()).map_err(|b| b.reason),
            ));
            Ok(())
        })
        .expect("read");
        out
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
        assert_eq!(collect(&bad)[0].1, Err("invalid_json"));
    }
}
