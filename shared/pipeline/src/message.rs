//! The messages between stages: versioned JSON carrying many records or calls each, packed
//! by size, each with enough context (run id, sync or destination) to be processed alone.
//!
//! SQS bills every 64 KiB of a request as one request, so bytes are what cost money. Bodies
//! are therefore gzip-compressed and base64-encoded by default (Salesforce records compress
//! about 5-8x, which more than pays for base64's third), at the `[pipeline]`
//! `compression_level` of the config ([`Compression`]; docs/benchmarks.md says how its
//! default was chosen). A reader decodes every level alike.
//!
//! Wire form of a body: either the message itself (`{"v":1,"kind":"records",…}`), or an
//! envelope `{"v":1,"encoding":"gzip+base64","payload":"…"}` whose payload decodes to it.

use std::io::{Read, Write};

use base64::Engine;
use serde::{Deserialize, Serialize};
use sfsync_mapping::{Call, Record};

/// The version every body carries; a reader rejects versions it does not know.
pub const MESSAGE_VERSION: u32 = 1;

/// SQS's classic body limit. AWS accepts larger bodies in some regions now, but every
/// 64 KiB is billed as a request either way, so there is nothing to gain beyond it.
pub const DEFAULT_MAX_BODY_BYTES: usize = 256 * 1024;

/// Extracted records of one sync, for the map stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordsMessage {
    pub v: u32,
    pub run_id: String,
    pub sync: String,
    /// Each record as its JSON text (written into the message as it is).
    pub records: Vec<Record>,
}

/// Calls for one destination, for the deliver stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallsMessage {
    pub v: u32,
    pub run_id: String,
    pub destination: String,
    /// How many times these calls were handed back for a later retry.
    #[serde(default)]
    pub attempt: u32,
    /// Since when (unix ms) the destination has refused our credentials for these calls,
    /// when it has: set at the first auth pause and kept while the pause lasts, so the
    /// deliver stage knows when it has lasted longer than `deliver::AUTH_PAUSE_LIMIT`.
    /// Auth pauses do not count as attempts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused_since: Option<i64>,
    pub calls: Vec<Call>,
}

/// A call that cannot be delivered, with the reason, as written to the dead-letter queue
/// (or the local dead-letter file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub v: u32,
    pub run_id: String,
    pub destination: String,
    pub reason: String,
    pub call: Call,
}

/// A message whose items the SQS queue packs into bodies by size (many records or calls
/// per body, never more than the body limit): the JSON up to its item array, and the items.
pub trait Packable {
    type Item: Serialize;
    /// The message's JSON up to the opening bracket of its item array (see [`Packer::new`]).
    fn prefix(&self) -> String;
    fn items(&self) -> &[Self::Item];
}

impl Packable for RecordsMessage {
    type Item = Record;
    fn prefix(&self) -> String {
        Packer::records_prefix(&self.run_id, &self.sync)
    }
    fn items(&self) -> &[Record] {
        &self.records
    }
}

impl Packable for CallsMessage {
    type Item = Call;
    fn prefix(&self) -> String {
        match self.paused_since {
            Some(since) => {
                Packer::paused_calls_prefix(&self.run_id, &self.destination, self.attempt, since)
            }
            None => Packer::calls_prefix(&self.run_id, &self.destination, self.attempt),
        }
    }
    fn items(&self) -> &[Call] {
        &self.calls
    }
}

#[derive(Serialize, Deserialize)]
struct Envelope {
    v: u32,
    encoding: String,
    payload: String,
}

const GZIP_BASE64: &str = "gzip+base64";

#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    #[error("message body is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("message version {0} is not supported (this build reads version {MESSAGE_VERSION})")]
    Version(u32),
    /// The envelope names an encoding this build does not read.
    #[error("message encoding {encoding:?} is not supported")]
    UnknownEncoding { encoding: String },
    /// The envelope's payload is not base64.
    #[error("message payload cannot be decoded: {0}")]
    Base64(#[source] base64::DecodeError),
    /// The envelope's payload is not gzip (or is cut short).
    #[error("message payload cannot be decoded: {0}")]
    Inflate(#[source] std::io::Error),
    /// Compressing a body failed.
    #[error("message payload cannot be compressed: {0}")]
    Compress(#[source] std::io::Error),
    #[error("an item of {size} bytes cannot fit in a message of at most {max} bytes")]
    ItemTooLarge { size: usize, max: usize },
}

/// Reads a body written by `Packer`, compressed or not.
pub fn decode<T: for<'de> Deserialize<'de>>(body: &str) -> Result<T, MessageError> {
    #[derive(Deserialize)]
    struct Probe {
        v: u32,
        #[serde(default)]
        encoding: Option<String>,
    }
    let probe: Probe = serde_json::from_str(body)?;
    if probe.v != MESSAGE_VERSION {
        return Err(MessageError::Version(probe.v));
    }
    match probe.encoding.as_deref() {
        None => Ok(serde_json::from_str(body)?),
        Some(GZIP_BASE64) => {
            let envelope: Envelope = serde_json::from_str(body)?;
            let compressed = base64::engine::general_purpose::STANDARD
                .decode(envelope.payload)
                .map_err(MessageError::Base64)?;
            let mut json = Vec::new();
            flate2::read::GzDecoder::new(&compressed[..])
                .take(64 << 20) // a body inflating past 64 MiB is not one of ours
                .read_to_end(&mut json)
                .map_err(MessageError::Inflate)?;
            let inner: T = serde_json::from_slice(&json)?;
            Ok(inner)
        }
        Some(other) => Err(MessageError::UnknownEncoding {
            encoding: other.to_string(),
        }),
    }
}

/// How bodies are encoded: plain JSON, or gzip + base64 at a level from 1 (fastest) to 9
/// (smallest). The config's `[pipeline]` chooses it (`PipelineConfig::compression_level`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Off,
    Gzip(u32),
}

impl Compression {
    /// From the config's level: 0 is off, 1-9 gzip at that level (above 9 counts as 9; the
    /// config's validation refuses it before it gets here).
    pub fn from_level(level: u32) -> Compression {
        match level {
            0 => Compression::Off,
            n => Compression::Gzip(n.min(9)),
        }
    }

    /// The level of the config's `[pipeline]` section.
    pub fn of(pipeline: &sfsync_mapping::config::PipelineConfig) -> Compression {
        Compression::from_level(pipeline.compression_level())
    }

    fn is_on(self) -> bool {
        self != Compression::Off
    }
}

/// `true` is gzip at the default level ([`DEFAULT_COMPRESSION_LEVEL`]), `false` plain JSON:
/// the `compress` flag of configs that do not name a level.
impl From<bool> for Compression {
    fn from(compress: bool) -> Compression {
        if compress {
            Compression::from_level(sfsync_mapping::config::DEFAULT_COMPRESSION_LEVEL)
        } else {
            Compression::Off
        }
    }
}

/// Packs a whole message into as few bodies of at most `max_body_bytes` as it needs (what
/// the SQS queue sends; benchmarks measure it without the network).
pub fn pack_message<M: Packable>(
    message: &M,
    max_body_bytes: usize,
    compression: Compression,
) -> Result<Vec<PackedBody>, MessageError> {
    let mut packer = Packer::new(message.prefix(), max_body_bytes, compression);
    for item in message.items() {
        packer.push(item)?;
    }
    packer.finish()
}

/// Builds bodies of at most `max_body_bytes` from a stream of items, each serialized once.
///
/// `prefix` is the message's JSON up to the opening bracket of its item array (e.g.
/// `{"v":1,"run_id":…,"records":[`); the packer closes it with `]}`.
pub struct Packer {
    prefix: String,
    max_body_bytes: usize,
    compression: Compression,
    /// Items of the body being filled, comma-separated.
    items: Vec<u8>,
    count: usize,
    /// Observed compression ratio (raw / encoded), used to decide how much raw JSON to
    /// gather before compressing. Starts cautious and adapts.
    ratio: f64,
    done: Vec<PackedBody>,
}

/// One finished body and how many items it carries.
#[derive(Debug, Clone)]
pub struct PackedBody {
    pub body: String,
    pub items: usize,
}

impl Packer {
    /// `compression`: a [`Compression`], or `true`/`false` for gzip at the default level or
    /// plain JSON.
    pub fn new(
        prefix: String,
        max_body_bytes: usize,
        compression: impl Into<Compression>,
    ) -> Packer {
        Packer {
            prefix,
            max_body_bytes,
            compression: compression.into(),
            items: Vec::new(),
            count: 0,
            ratio: 2.0,
            done: Vec::new(),
        }
    }

    /// Prefix for a records message.
    pub fn records_prefix(run_id: &str, sync: &str) -> String {
        format!(
            "{{\"v\":{MESSAGE_VERSION},\"run_id\":{},\"sync\":{},\"records\":[",
            json_string(run_id),
            json_string(sync)
        )
    }

    /// Prefix for a calls message.
    pub fn calls_prefix(run_id: &str, destination: &str, attempt: u32) -> String {
        format!(
            "{{\"v\":{MESSAGE_VERSION},\"run_id\":{},\"destination\":{},\"attempt\":{attempt},\"calls\":[",
            json_string(run_id),
            json_string(destination)
        )
    }

    /// Prefix for a calls message held back by an auth pause that began at `paused_since`
    /// (unix ms; see `CallsMessage::paused_since`).
    pub fn paused_calls_prefix(
        run_id: &str,
        destination: &str,
        attempt: u32,
        paused_since: i64,
    ) -> String {
        format!(
            "{{\"v\":{MESSAGE_VERSION},\"run_id\":{},\"destination\":{},\"attempt\":{attempt},\"paused_since\":{paused_since},\"calls\":[",
            json_string(run_id),
            json_string(destination)
        )
    }

    /// Adds one item. An item that could never fit a body is refused with its size.
    pub fn push<T: Serialize>(&mut self, item: &T) -> Result<(), MessageError> {
        let json = serde_json::to_vec(item)?;
        self.push_json(json)
    }

    fn push_json(&mut self, json: Vec<u8>) -> Result<(), MessageError> {
        let overhead = self.prefix.len() + 2;
        let alone = overhead + json.len();
        if !self.compression.is_on() && alone > self.max_body_bytes {
            return Err(MessageError::ItemTooLarge {
                size: json.len(),
                max: self.max_body_bytes,
            });
        }
        if self.count > 0 && self.over_budget(json.len()) {
            self.make_room(json.len())?;
        }
        if self.count > 0 {
            self.items.push(b',');
        }
        self.items.extend_from_slice(&json);
        self.count += 1;
        Ok(())
    }

    /// Whether adding an item of `next_len` bytes would pass the raw bytes we allow before
    /// closing: the limit itself uncompressed, or the limit times the compression ratio
    /// (with a margin) when compressing.
    fn over_budget(&self, next_len: usize) -> bool {
        let raw_budget = if self.compression.is_on() {
            ((self.max_body_bytes as f64) * self.ratio * 0.9) as usize
        } else {
            self.max_body_bytes
        };
        self.prefix.len() + 2 + self.items.len() + 1 + next_len > raw_budget
    }

    /// Called when the next item would pass the budget. Uncompressed, that closes the body.
    /// Compressed, the budget is only an estimate: compress what there is, and if it came
    /// out well under the limit (the estimate was cautious, as it is for a packer's first
    /// body), learn the real ratio and keep filling; else this encoding is the body. Each
    /// retry at least grows the budget by 0.9 / 0.8, so a body is compressed a few times at
    /// most, and only while the packer learns.
    fn make_room(&mut self, next_len: usize) -> Result<(), MessageError> {
        let Compression::Gzip(level) = self.compression else {
            return self.close();
        };
        let raw = self.wrap(&self.items);
        let encoded = encode_gzip(&raw, level)?;
        if encoded.len() > self.max_body_bytes {
            // Compressed worse than hoped: close() splits the items.
            return self.close();
        }
        self.ratio = (raw.len() as f64 / encoded.len().max(1) as f64).clamp(1.0, 20.0);
        if (encoded.len() as f64) <= (self.max_body_bytes as f64) * 0.8
            && !self.over_budget(next_len)
        {
            return Ok(());
        }
        let count = std::mem::take(&mut self.count);
        self.items.clear();
        self.done.push(PackedBody {
            body: encoded,
            items: count,
        });
        Ok(())
    }

    /// Closes the body being filled, if any.
    fn close(&mut self) -> Result<(), MessageError> {
        if self.count == 0 {
            return Ok(());
        }
        let items = std::mem::take(&mut self.items);
        let count = std::mem::take(&mut self.count);
        let raw = self.wrap(&items);
        let Compression::Gzip(level) = self.compression else {
            self.done.push(PackedBody {
                body: raw,
                items: count,
            });
            return Ok(());
        };
        let encoded = encode_gzip(&raw, level)?;
        if encoded.len() <= self.max_body_bytes {
            self.ratio = (raw.len() as f64 / encoded.len().max(1) as f64).clamp(1.0, 20.0);
            self.done.push(PackedBody {
                body: encoded,
                items: count,
            });
            return Ok(());
        }
        if count == 1 {
            return Err(MessageError::ItemTooLarge {
                size: items.len(),
                max: self.max_body_bytes,
            });
        }
        // Compressed worse than hoped: split the items in two and try each half.
        self.ratio = (self.ratio * 0.7).max(1.0);
        let parts = split_items(&items);
        let half = parts.len() / 2;
        for chunk in [&parts[..half], &parts[half..]] {
            for part in chunk {
                if self.count > 0 {
                    self.items.push(b',');
                }
                self.items.extend_from_slice(part);
                self.count += 1;
            }
            self.close()?;
        }
        Ok(())
    }

    fn wrap(&self, items: &[u8]) -> String {
        let mut s = String::with_capacity(self.prefix.len() + items.len() + 2);
        s.push_str(&self.prefix);
        // Items are serde_json output: valid UTF-8.
        s.push_str(&String::from_utf8_lossy(items));
        s.push_str("]}");
        s
    }

    /// Bodies finished so far (call between items to send early and keep memory bounded).
    pub fn take_ready(&mut self) -> Vec<PackedBody> {
        std::mem::take(&mut self.done)
    }

    /// Closes the last body and returns everything not yet taken.
    pub fn finish(mut self) -> Result<Vec<PackedBody>, MessageError> {
        self.close()?;
        Ok(self.done)
    }
}

fn encode_gzip(raw: &str, level: u32) -> Result<String, MessageError> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(level));
    encoder
        .write_all(raw.as_bytes())
        .and_then(|_| encoder.finish())
        .map_err(MessageError::Compress)
        .map(|compressed| {
            let payload = base64::engine::general_purpose::STANDARD.encode(compressed);
            format!(
                "{{\"v\":{MESSAGE_VERSION},\"encoding\":\"{GZIP_BASE64}\",\"payload\":\"{payload}\"}}"
            )
        })
}

/// Splits comma-joined JSON items back into items (commas inside strings, objects and
/// arrays are not separators).
fn split_items(items: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let (mut depth, mut in_string, mut escaped, mut start) = (0i32, false, false, 0usize);
    for (i, &b) in items.iter().enumerate() {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => depth += 1,
            b'}' | b']' => depth -= 1,
            b',' if depth == 0 => {
                out.push(&items[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if start < items.len() {
        out.push(&items[start..]);
    }
    out
}

fn json_string(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn records(n: usize, pad: usize) -> Vec<Record> {
        (0..n)
            .map(|i| json!({"Id": format!("003{i:015}"), "Name": "José, \"the\" [x]", "Pad": "x".repeat(pad), "N": i}))
            .map(Record::from).collect()
    }

    /// Records whose padding is pseudo-random hex: they compress about 2 ×, like real ones,
    /// not 20 × like a repeated character.
    fn varied_records(n: usize, pad: usize) -> Vec<Record> {
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        (0..n)
            .map(|i| {
                let pad: String = (0..pad)
                    .map(|_| {
                        state ^= state << 13;
                        state ^= state >> 7;
                        state ^= state << 17;
                        char::from(b"0123456789abcdef"[(state % 16) as usize])
                    })
                    .collect();
                json!({"Id": format!("003{i:015}"), "Name": "José, \"the\" [x]", "Pad": pad, "N": i})
            })
            .map(Record::from).collect()
    }

    /// Records shaped like Salesforce contacts: words from small vocabularies, as names,
    /// titles and cities are, so that gzip's levels differ as they do on real records.
    fn contact_like_records(n: usize) -> Vec<Record> {
        const FIRST: [&str; 8] = [
            "Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Ken", "Frances",
        ];
        const LAST: [&str; 8] = [
            "Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Thompson", "Allen",
        ];
        const TITLE: [&str; 4] = ["Analyst", "VP Sales", "Engineer", "Director of Operations"];
        const CITY: [&str; 5] = ["London", "Paris", "Austin", "Osaka", "São Paulo"];
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move |m: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % m as u64) as usize
        };
        (0..n)
            .map(|i| {
                let (first, last) = (FIRST[next(8)], LAST[next(8)]);
                json!({
                    "attributes": {"type": "Contact", "url": format!("/services/data/v62.0/sobjects/Contact/003{i:015}")},
                    "Id": format!("003{i:015}"),
                    "SystemModstamp": format!("2024-05-{:02}T{:02}:{:02}:00.000+0000", 1 + next(28), next(24), next(60)),
                    "Email": format!("{}.{}{}@example.com", first.to_lowercase(), last.to_lowercase(), next(1000)),
                    "FirstName": first,
                    "LastName": last,
                    "Title": TITLE[next(4)],
                    "Phone": format!("+1 555 {:04}", next(10_000)),
                    "MailingAddress": {"city": CITY[next(5)], "postalCode": format!("{:05}", next(100_000)), "street": format!("{} Main St", next(999))},
                })
            })
            .map(Record::from).collect()
    }

    fn pack(records: &[Record], max: usize, compress: bool) -> Vec<PackedBody> {
        let mut p = Packer::new(Packer::records_prefix("run-1", "contacts"), max, compress);
        for r in records {
            p.push(r).unwrap();
        }
        p.finish().unwrap()
    }

    #[test]
    fn every_record_comes_back_in_order_and_every_body_fits() {
        for compress in [false, true] {
            let input = varied_records(3000, 200);
            let bodies = pack(&input, 64 * 1024, compress);
            assert!(bodies.len() > 1, "should need several bodies");
            let mut out = Vec::new();
            for b in &bodies {
                assert!(b.body.len() <= 64 * 1024, "{} > limit", b.body.len());
                let m: RecordsMessage = decode(&b.body).unwrap();
                assert_eq!(m.items_len(), b.items);
                assert_eq!((m.run_id.as_str(), m.sync.as_str()), ("run-1", "contacts"));
                out.extend(m.records);
            }
            assert_eq!(out, input);
        }
    }

    #[test]
    fn compressed_bodies_are_full_from_the_first_one() {
        // The packer starts from a cautious 2 × estimate; these records compress better,
        // and the first body must not be closed half empty because of the guess.
        let input = varied_records(6000, 40);
        let max = 64 * 1024;
        let bodies = pack(&input, max, true);
        assert!(bodies.len() >= 3, "{} bodies", bodies.len());
        for (i, b) in bodies[..bodies.len() - 1].iter().enumerate() {
            assert!(
                b.body.len() * 4 >= max * 3,
                "body {i} holds {} bytes of {max}",
                b.body.len()
            );
        }
    }

    #[test]
    fn compression_packs_many_more_records_per_body() {
        let input = records(5000, 300);
        let plain = pack(&input, 256 * 1024, false).len();
        let compressed = pack(&input, 256 * 1024, true).len();
        assert!(
            compressed * 4 <= plain,
            "plain {plain} bodies, compressed {compressed}"
        );
    }

    #[test]
    fn an_item_that_cannot_fit_is_refused_with_its_size() {
        let mut p = Packer::new(Packer::records_prefix("r", "s"), 1024, false);
        let err = p.push(&json!({"Big": "y".repeat(5000)})).unwrap_err();
        assert!(
            matches!(err, MessageError::ItemTooLarge { max: 1024, .. }),
            "{err}"
        );
        // Incompressible data is refused when compressing too.
        // (xorshift: a multiplicative sequence repeats in ways gzip's higher levels find)
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let noise: String = (0..20_000u32)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                char::from(b'!' + (state % 90) as u8)
            })
            .collect();
        let mut p = Packer::new(Packer::records_prefix("r", "s"), 4096, true);
        p.push(&json!({"Noise": noise})).unwrap();
        assert!(matches!(p.finish(), Err(MessageError::ItemTooLarge { .. })));
    }

    #[test]
    fn bad_bodies_give_clear_errors() {
        assert!(matches!(
            decode::<RecordsMessage>("not json"),
            Err(MessageError::Json(_))
        ));
        assert!(matches!(
            decode::<RecordsMessage>(r#"{"v":7,"run_id":"r","sync":"s","records":[]}"#),
            Err(MessageError::Version(7))
        ));
        assert!(matches!(
            decode::<RecordsMessage>(r#"{"v":1,"encoding":"zstd","payload":""}"#),
            Err(MessageError::UnknownEncoding { encoding }) if encoding == "zstd"
        ));
        assert!(matches!(
            decode::<RecordsMessage>(r#"{"v":1,"encoding":"gzip+base64","payload":"!!!"}"#),
            Err(MessageError::Base64(_))
        ));
        // Valid base64 of bytes that are not gzip.
        assert!(matches!(
            decode::<RecordsMessage>(
                r#"{"v":1,"encoding":"gzip+base64","payload":"bm90IGd6aXA="}"#
            ),
            Err(MessageError::Inflate(_))
        ));
        assert!(matches!(
            decode::<RecordsMessage>(r#"{"v":1,"run_id":"r","sync":"s"}"#),
            Err(MessageError::Json(_))
        ));
    }

    #[test]
    fn every_level_is_read_back_and_a_higher_level_makes_fewer_bytes() {
        let input = contact_like_records(2000);
        let packed = |compression| {
            let message = RecordsMessage {
                v: MESSAGE_VERSION,
                run_id: "run-1".into(),
                sync: "contacts".into(),
                records: input.clone(),
            };
            pack_message(&message, 1 << 20, compression).unwrap()
        };
        let mut sizes = Vec::new();
        for level in 0..=9 {
            let bodies = packed(Compression::from_level(level));
            assert_eq!(bodies.len(), 1, "level {level}");
            let body = &bodies[0].body;
            assert_eq!(body.contains("gzip+base64"), level > 0, "level {level}");
            let back: RecordsMessage = decode(body).unwrap();
            assert_eq!(back.records, input, "level {level}");
            sizes.push(body.len());
        }
        // 0 is plain JSON; 1 the fastest gzip; 6 (the default) smaller still.
        assert!(sizes[1] * 3 < sizes[0], "{sizes:?}");
        assert!(sizes[6] * 10 < sizes[1] * 9, "{sizes:?}");
        // `true`/`false` are the default level and no compression.
        let default = sfsync_mapping::config::DEFAULT_COMPRESSION_LEVEL as usize;
        assert_eq!(
            packed(Compression::from(true))[0].body.len(),
            sizes[default]
        );
        assert_eq!(packed(Compression::from(false))[0].body.len(), sizes[0]);
    }

    #[test]
    fn the_config_level_reaches_the_packer() {
        let config = |text: &str| -> sfsync_mapping::config::PipelineConfig {
            let mut p = sfsync_mapping::config::PipelineConfig::default();
            match text {
                "off" => p.compress = false,
                level => p.compression_level = Some(level.parse().unwrap()),
            }
            p
        };
        assert_eq!(Compression::of(&config("off")), Compression::Off);
        assert_eq!(Compression::of(&config("0")), Compression::Off);
        assert_eq!(Compression::of(&config("1")), Compression::Gzip(1));
        assert_eq!(Compression::of(&config("9")), Compression::Gzip(9));
    }

    #[test]
    fn split_respects_strings_and_nesting() {
        let items = br#"{"a":"x,y"},[1,2],"s,\"t","#;
        let parts = split_items(&items[..items.len() - 1]);
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[0], br#"{"a":"x,y"}"#);
        assert_eq!(parts[2], br#""s,\"t""#);
    }

    impl RecordsMessage {
        fn items_len(&self) -> usize {
            self.records.len()
        }
    }
}
