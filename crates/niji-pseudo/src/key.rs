//! Pseudonymization keys and keyed pseudonyms.

use std::fmt;
use std::path::Path;

use ring::hmac;
use sha2::{Digest, Sha256};

use crate::{PseudoError, Result};

/// Minimum key length in bytes (256 bits).
pub const MIN_KEY_LEN: usize = 32;
/// Pseudonym length in bytes: 128 bits, 32 hex characters.
pub const PSEUDONYM_BYTES: usize = 16;

/// What a pseudonym stands for. The domain is part of the MAC input, so a facility code and
/// a person key with the same text never yield the same pseudonym.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Domain {
    /// A person, from linkage key ID1 (insurer number, 記号, 番号, birth date, sex).
    PersonId1,
    /// A person, from linkage key ID2 (kana name, birth date, sex).
    PersonId2,
    /// A person, from a source-system identifier when no Japanese linkage key exists.
    PersonSource,
    /// A facility or care provider.
    Facility,
    /// A care or health insurer.
    Insurer,
    /// A source record (receipt, resource id, line): gives stable row ids.
    Record,
    /// Re-keying of `person_id` per project for row-level extracts.
    Project,
    /// The per-person date shift of [`crate::generalize::DateShifter`].
    DateShift,
    /// Derivation of one key from another (per-project keys).
    KeyDerivation,
}

impl Domain {
    fn tag(self) -> &'static [u8] {
        match self {
            Domain::PersonId1 => b"niji/person/id1",
            Domain::PersonId2 => b"niji/person/id2",
            Domain::PersonSource => b"niji/person/source",
            Domain::Facility => b"niji/facility",
            Domain::Insurer => b"niji/insurer",
            Domain::Record => b"niji/record",
            Domain::Project => b"niji/project",
            Domain::DateShift => b"niji/date-shift",
            Domain::KeyDerivation => b"niji/key-derivation",
        }
    }
}

/// A secret pseudonymization key, pre-keyed: each pseudonym starts from the keyed HMAC-SHA256
/// state instead of re-deriving the inner and outer pads.
///
/// The MAC is `ring`'s HMAC-SHA256 (assembly SHA-256 with the SHA extensions, AVX or SSSE3,
/// picked at run time): on a CPU without the SHA extensions it takes 1.4 µs for a record id
/// against 2.0 µs with `hmac`/`sha2`'s portable code, and record ids are one per loaded
/// record. The tests check it against the `hmac` crate, so the pseudonyms are those of any
/// HMAC-SHA256.
///
/// `Debug` never prints key material.
#[derive(Clone)]
pub struct PseudonymKey {
    mac: hmac::Key,
    key_id: String,
}

impl fmt::Debug for PseudonymKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PseudonymKey").field("key_id", &self.key_id).finish_non_exhaustive()
    }
}

impl PseudonymKey {
    /// A key from raw bytes (at least [`MIN_KEY_LEN`]).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        if bytes.len() < MIN_KEY_LEN {
            return Err(PseudoError::KeyTooShort { len: bytes.len() });
        }
        let mac = hmac::Key::new(hmac::HMAC_SHA256, bytes);
        // The key id identifies the key in run reports and dataset versions without revealing it:
        // a hash over a fixed label and the key, truncated to 64 bits.
        let mut h = Sha256::new();
        h.update(b"niji/key-id/v1\x1f");
        h.update(bytes);
        let key_id = hex::encode(&h.finalize()[..8]);
        Ok(Self { mac, key_id })
    }

    /// A key from a file: hex text (64+ hex characters, whitespace ignored) or raw bytes.
    pub fn from_file(path: &Path) -> Result<Self> {
        let raw = std::fs::read(path)
            .map_err(|e| PseudoError::KeyFile { path: path.display().to_string(), reason: e.kind().to_string() })?;
        let text: String = String::from_utf8_lossy(&raw).split_whitespace().collect();
        if text.len() >= 2 * MIN_KEY_LEN && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            let bytes = hex::decode(&text).map_err(|_| PseudoError::KeyFile {
                path: path.display().to_string(),
                reason: "odd number of hex digits".into(),
            })?;
            return Self::from_bytes(&bytes);
        }
        Self::from_bytes(&raw)
    }

    /// A key from an environment variable holding hex.
    pub fn from_env(var: &str) -> Result<Self> {
        let v = std::env::var(var).map_err(|_| PseudoError::KeyEnv { var: var.into(), reason: "not set".into() })?;
        let bytes = hex::decode(v.trim())
            .map_err(|_| PseudoError::KeyEnv { var: var.into(), reason: "not valid hex".into() })?;
        Self::from_bytes(&bytes)
    }

    /// The public key id (64-bit digest) recorded with every dataset version.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The full 256-bit MAC of `parts` in `domain` (the hot path: one clone of the pre-keyed
    /// state, no allocation).
    fn mac_full(&self, domain: Domain, parts: &[&str]) -> [u8; 32] {
        let tag = domain.tag();
        let len = tag.len() + parts.iter().map(|p| 1 + p.len()).sum::<usize>();
        let out = if len <= 128 {
            // Short identifier tuples (the common case): one call over a stack buffer.
            let mut buf = [0u8; 128];
            buf[..tag.len()].copy_from_slice(tag);
            let mut at = tag.len();
            for p in parts {
                buf[at] = 0x1f;
                buf[at + 1..at + 1 + p.len()].copy_from_slice(p.as_bytes());
                at += 1 + p.len();
            }
            hmac::sign(&self.mac, &buf[..at])
        } else {
            let mut mac = hmac::Context::with_key(&self.mac);
            mac.update(tag);
            for p in parts {
                mac.update(b"\x1f");
                mac.update(p.as_bytes());
            }
            mac.sign()
        };
        let mut full = [0u8; 32];
        full.copy_from_slice(out.as_ref());
        full
    }

    /// The raw 128-bit pseudonym of `parts` in `domain`. Parts are separated by the unit
    /// separator (0x1F), which normalized identifiers never contain.
    pub fn pseudonym_bytes(&self, domain: Domain, parts: &[&str]) -> [u8; PSEUDONYM_BYTES] {
        let full = self.mac_full(domain, parts);
        let mut out = [0u8; PSEUDONYM_BYTES];
        out.copy_from_slice(&full[..PSEUDONYM_BYTES]);
        out
    }

    /// The pseudonym as 32 lowercase hex bytes written into `out`, without allocating: what
    /// column builders call per row.
    pub fn pseudonym_hex(&self, domain: Domain, parts: &[&str], out: &mut [u8; 2 * PSEUDONYM_BYTES]) {
        let b = self.pseudonym_bytes(domain, parts);
        const HEX: &[u8; 16] = b"0123456789abcdef";
        for (i, byte) in b.iter().enumerate() {
            out[2 * i] = HEX[usize::from(byte >> 4)];
            out[2 * i + 1] = HEX[usize::from(byte & 0x0f)];
        }
    }

    /// A key derived from this one for `label` (e.g. a project id): HMAC(self, label) as the
    /// new key's 256-bit material. Keys derived for different labels are independent; none
    /// reveals this key or another derived key.
    pub fn derive(&self, label: &str) -> PseudonymKey {
        let material = self.mac_full(Domain::KeyDerivation, &[label]);
        match Self::from_bytes(&material) {
            Ok(k) => k,
            // 32 bytes always meet MIN_KEY_LEN; keep the original rather than panic.
            Err(_) => self.clone(),
        }
    }

    /// The pseudonym of `parts` in `domain` as 32 lowercase hex characters.
    pub fn pseudonym(&self, domain: Domain, parts: &[&str]) -> String {
        // Through the table-driven `pseudonym_hex`: `hex::encode` collects chars one by one,
        // which showed in the FHIR ingest's profile (one record id per resource).
        let mut out = [0u8; 2 * PSEUDONYM_BYTES];
        self.pseudonym_hex(domain, parts, &mut out);
        // Hex digits are ASCII, so the bytes are UTF-8: the check is the standard library's
        // ASCII fast path (`from_utf8_lossy` walked them as chunks, 280 instructions a call).
        match std::str::from_utf8(&out) {
            Ok(hex) => hex.to_owned(),
            Err(_) => String::from_utf8_lossy(&out).into_owned(),
        }
    }
}

/// Per-project re-keying of `person_id` for row-level extracts: `HMAC(project_key, person_id)`.
///
/// The project key is derived from an extract master key (never the pipeline key, which does
/// not reach the query service) and the project id, so each project gets its own pseudonym
/// space: two projects' extracts share no `person_id` value and cannot be joined.
#[derive(Clone, Debug)]
pub struct ProjectKey {
    key: PseudonymKey,
    project: String,
}

impl ProjectKey {
    /// The project key of `project` derived from the extract master key.
    pub fn derive(extract_master: &PseudonymKey, project: &str) -> Self {
        Self { key: extract_master.derive(&format!("project\x1f{project}")), project: project.to_owned() }
    }

    /// A project key from its own key material.
    pub fn new(project: &str, key: PseudonymKey) -> Self {
        Self { key, project: project.to_owned() }
    }

    /// The project this key belongs to.
    pub fn project(&self) -> &str {
        &self.project
    }

    /// The key id of the project key (recorded with the extract).
    pub fn key_id(&self) -> &str {
        self.key.key_id()
    }

    /// The project-scoped pseudonym of a `person_id`.
    pub fn rekey(&self, person_id: &str) -> String {
        self.key.pseudonym(Domain::Project, &[person_id])
    }

    /// The underlying key (for the `niji_rekey` UDF).
    pub fn key(&self) -> &PseudonymKey {
        &self.key
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ::hmac::Mac;

    /// The reference HMAC-SHA256 (the `hmac` crate), which the pseudonyms must equal.
    type HmacSha256 = ::hmac::Hmac<Sha256>;

    fn reference(key: &[u8], msg: &[u8]) -> [u8; 32] {
        let mut m = HmacSha256::new_from_slice(key).expect("any key length");
        m.update(msg);
        m.finalize().into_bytes().into()
    }

    /// Every key length around SHA-256's block (longer keys are hashed first) and every message
    /// length across the one-, two- and three-block inner hashes and the 128-byte stack buffer,
    /// in every domain: the MAC is bit for bit the reference's. It fails if the key is padded or
    /// hashed differently, if a part separator or the domain tag is dropped, or if either path
    /// (stack buffer, streamed) builds another message.
    #[test]
    fn the_mac_is_the_reference_hmac_sha256() {
        let domains = [
            Domain::PersonId1,
            Domain::PersonId2,
            Domain::PersonSource,
            Domain::Facility,
            Domain::Insurer,
            Domain::Record,
            Domain::Project,
            Domain::DateShift,
            Domain::KeyDerivation,
        ];
        for key_len in [32usize, 33, 63, 64, 65, 100, 200] {
            let raw: Vec<u8> = (0..key_len).map(|i| (i * 7 + key_len) as u8).collect();
            let k = PseudonymKey::from_bytes(&raw).expect("key");
            for n in 0..300usize {
                let text: String = (0..n).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
                let (a, b) = text.split_at(n / 3);
                let d = domains[n % domains.len()];
                let mut msg = d.tag().to_vec();
                for p in [a, b] {
                    msg.push(0x1f);
                    msg.extend_from_slice(p.as_bytes());
                }
                assert_eq!(k.mac_full(d, &[a, b]), reference(&raw, &msg), "key {key_len} bytes, message {n}");
            }
        }
    }

    fn key(b: u8) -> PseudonymKey {
        PseudonymKey::from_bytes(&[b; 32]).expect("valid key")
    }

    #[test]
    fn short_keys_are_refused() {
        assert_eq!(PseudonymKey::from_bytes(&[0; 31]).err(), Some(PseudoError::KeyTooShort { len: 31 }));
    }

    #[test]
    fn pseudonyms_are_128_bit_hex_and_deterministic() {
        let k = key(1);
        let a = k.pseudonym(Domain::Facility, &["1310000"]);
        assert_eq!(a.len(), 32);
        assert_eq!(a, k.pseudonym(Domain::Facility, &["1310000"]));
    }

    #[test]
    fn domains_and_keys_separate() {
        let k = key(1);
        assert_ne!(k.pseudonym(Domain::Facility, &["x"]), k.pseudonym(Domain::Insurer, &["x"]));
        assert_ne!(k.pseudonym(Domain::Facility, &["x"]), key(2).pseudonym(Domain::Facility, &["x"]));
        // Long inputs take the other path and give the same MAC as a plain HMAC over the message.
        let long = "x".repeat(200);
        let msg = format!("niji/record\x1fa\x1f{long}");
        assert_eq!(k.pseudonym_bytes(Domain::Record, &["a", &long])[..], reference(&[1; 32], msg.as_bytes())[..16]);
        assert_eq!(
            k.pseudonym_bytes(Domain::Record, &["a", "b"])[..],
            reference(&[1; 32], b"niji/record\x1fa\x1fb")[..16]
        );
        // Part boundaries matter: ("ab","c") is not ("a","bc").
        assert_ne!(k.pseudonym(Domain::Record, &["ab", "c"]), k.pseudonym(Domain::Record, &["a", "bc"]));
    }

    #[test]
    fn hex_without_allocation_matches() {
        let k = key(3);
        let mut buf = [0u8; 32];
        k.pseudonym_hex(Domain::Record, &["a", "b"], &mut buf);
        assert_eq!(std::str::from_utf8(&buf).expect("ascii"), k.pseudonym(Domain::Record, &["a", "b"]));
    }

    #[test]
    fn projects_cannot_join_their_extracts() {
        let master = key(9);
        let (a, b) = (ProjectKey::derive(&master, "p-001"), ProjectKey::derive(&master, "p-002"));
        assert_ne!(a.key_id(), b.key_id());
        assert_ne!(a.key_id(), master.key_id());
        let persons: Vec<String> = (0..1000).map(|i| master.pseudonym(Domain::PersonId1, &[&i.to_string()])).collect();
        let xa: std::collections::HashSet<String> = persons.iter().map(|p| a.rekey(p)).collect();
        let xb: std::collections::HashSet<String> = persons.iter().map(|p| b.rekey(p)).collect();
        assert_eq!(xa.len(), 1000);
        assert_eq!(xa.intersection(&xb).count(), 0);
        // Stable within a project, and not the input.
        assert_eq!(a.rekey(&persons[0]), ProjectKey::derive(&master, "p-001").rekey(&persons[0]));
        assert!(!xa.contains(&persons[0]));
    }

    #[test]
    fn debug_hides_key_material() {
        let dbg = format!("{:?}", key(0xAB));
        assert!(!dbg.to_lowercase().contains("abab"), "{dbg}");
        assert!(dbg.contains("key_id"));
    }
}
