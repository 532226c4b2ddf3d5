//! The CDR export: every leg of a window as CSV, streamed as PostgreSQL produces it, so a
//! million rows cost no more memory than a few.
//!
//! PostgreSQL sends the rows as binary COPY and this process writes the CSV: formatting
//! timestamps and numbers as text is most of the cost of a CSV COPY, and done here it runs on
//! another core than the database backend's scan (about twice the rows per second). The csv
//! crate writes the lines (RFC 4180: quoted only when needed, CRLF).

use super::Window;
use bytes::{Buf, Bytes, BytesMut};
use chrono::{DateTime, Datelike, SecondsFormat, Timelike, Utc};
use csv::Writer;
use futures_util::stream::{self, BoxStream, StreamExt};
use sqlx::postgres::PgPoolCopyExt;
use sqlx::PgPool;

#[derive(Clone, Copy)]
enum Kind {
    Uuid,
    Text,
    Time,
    Int,
}

fn address(col: &str) -> String {
    format!("COALESCE({col}->>'number', {col}->>'uri', {col}->>'user', {col}->>'extension')")
}

/// The CSV columns: header, SQL expression, and how the binary value is written.
fn columns() -> Vec<(&'static str, String, Kind)> {
    let c = |name: &'static str, sql: &str, kind: Kind| (name, sql.to_string(), kind);
    vec![
        c("uuid", "uuid", Kind::Uuid),
        c("conversation_uuid", "conversation_uuid", Kind::Text),
        c("application_id", "application_id", Kind::Uuid),
        c("direction", "direction", Kind::Text),
        c("status", "status", Kind::Text),
        c("ending", "ending", Kind::Text),
        c("detail", "detail", Kind::Text),
        ("from", address("from_endpoint"), Kind::Text),
        ("to", address("to_endpoint"), Kind::Text),
        c("country", "country", Kind::Text),
        c("network", "network", Kind::Text),
        c("created_at", "created_at", Kind::Time),
        c("start_time", "start_time", Kind::Time),
        c("end_time", "end_time", Kind::Time),
        c("duration", "duration_s", Kind::Int),
        c("billed_seconds", "billed_s", Kind::Int),
        // NUMERIC's own text: exact, 8 places, as the API shows it.
        c("rate", "rate::text", Kind::Text),
        c("price", "price::text", Kind::Text),
        ("currency", format!("'{}'::text", crate::billing::CURRENCY), Kind::Text),
        // Last, so readers by position keep their columns. The caller's tag of the call: the CDR
        // is what is left of a leg once it is archived, and the tag is how its owner finds it.
        c("user_data", "user_data", Kind::Text),
    ]
}

/// A timestamptz literal (COPY takes no bind parameters); the ends of time when open.
fn literal(t: Option<DateTime<Utc>>, open: &str) -> String {
    match t {
        Some(t) => format!("'{}'::timestamptz", t.to_rfc3339_opts(SecondsFormat::Micros, true)),
        None => format!("'{open}'::timestamptz"),
    }
}

/// The export's COPY statement (public for the benchmark's baseline).
pub fn copy_statement(account_id: i64, window: Window) -> String {
    let select: Vec<String> = columns().into_iter().map(|(name, sql, _)| format!("{sql} AS \"{name}\"")).collect();
    format!(
        "COPY (SELECT {} FROM calls WHERE account_id = {account_id} AND created_at >= {} AND created_at <= {}
               ORDER BY created_at, uuid) TO STDOUT WITH (FORMAT binary)",
        select.join(", "),
        literal(window.start, "-infinity"),
        literal(window.end, "infinity"),
    )
}

/// The CSV (with a header row) of the account's legs created in `window`, oldest first.
pub async fn export(pool: &PgPool, account_id: i64, window: Window) -> Result<BoxStream<'static, Result<Bytes, sqlx::Error>>, sqlx::Error> {
    let raw = pool.copy_out_raw(&copy_statement(account_id, window)).await?;
    let kinds: Vec<Kind> = columns().into_iter().map(|c| c.2).collect();
    let mut header = csv_writer(Vec::new());
    header.write_record(columns().iter().map(|c| c.0)).map_err(csv_failed)?;
    let header = csv_bytes(header)?;
    let mut decoder = Decoder { kinds, pending: BytesMut::new(), header_seen: false, finished: false };
    // COPY sends a message per row: whatever has arrived is converted as one chunk.
    let body = raw.ready_chunks(512).map(move |batch| {
        let mut out = csv_writer(Vec::with_capacity(batch.len() * 160));
        for chunk in batch {
            decoder.feed(&chunk?, &mut out)?;
        }
        csv_bytes(out)
    });
    Ok(stream::once(async move { Ok(header) }).chain(body).boxed())
}

/// RFC 4180 lines: a field is quoted when it holds a comma, quote or line break, quotes are
/// doubled, lines end with CRLF.
fn csv_writer(out: Vec<u8>) -> Writer<Vec<u8>> {
    csv::WriterBuilder::new().terminator(csv::Terminator::CRLF).from_writer(out)
}

fn csv_bytes(writer: Writer<Vec<u8>>) -> Result<Bytes, sqlx::Error> {
    writer.into_inner().map(Bytes::from).map_err(|e| csv_failed(e.into_error()))
}

/// Writing to memory fails only on a row with another field count than the header's.
fn csv_failed(e: impl std::fmt::Display) -> sqlx::Error {
    sqlx::Error::Protocol(format!("CDR export: writing the CSV: {e}"))
}

/// Binary COPY in, CSV out; rows may be split across chunks.
struct Decoder {
    kinds: Vec<Kind>,
    pending: BytesMut,
    header_seen: bool,
    finished: bool,
}

const SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";
/// 2000-01-01T00:00:00Z, PostgreSQL's epoch, in Unix microseconds.
const PG_EPOCH_US: i64 = 946_684_800_000_000;

fn protocol(what: &str) -> sqlx::Error {
    sqlx::Error::Protocol(format!("binary COPY of the CDR export: {what}"))
}

impl Decoder {
    fn feed(&mut self, chunk: &[u8], out: &mut Writer<Vec<u8>>) -> Result<(), sqlx::Error> {
        self.pending.extend_from_slice(chunk);
        if !self.header_seen {
            // signature, flags (4), extension length (4) and extension
            if self.pending.len() < SIGNATURE.len() + 8 {
                return Ok(());
            }
            if &self.pending[..SIGNATURE.len()] != SIGNATURE {
                return Err(protocol("no PGCOPY signature"));
            }
            let ext = u32::from_be_bytes(self.pending[SIGNATURE.len() + 4..SIGNATURE.len() + 8].try_into().expect("4 bytes")) as usize;
            if self.pending.len() < SIGNATURE.len() + 8 + ext {
                return Ok(());
            }
            self.pending.advance(SIGNATURE.len() + 8 + ext);
            self.header_seen = true;
        }
        while let Some(used) = self.row(out)? {
            self.pending.advance(used);
        }
        Ok(())
    }

    /// Writes the first complete row of `pending` as a CSV line and returns its length in
    /// bytes; None when the row is not all here yet (or after the trailer).
    fn row(&mut self, out: &mut Writer<Vec<u8>>) -> Result<Option<usize>, sqlx::Error> {
        let buf = &self.pending[..];
        if self.finished || buf.len() < 2 {
            return Ok(None);
        }
        let fields = i16::from_be_bytes([buf[0], buf[1]]);
        if fields == -1 {
            self.finished = true;
            return Ok(Some(2));
        }
        if fields as usize != self.kinds.len() {
            return Err(protocol("unexpected field count"));
        }
        // First check the whole row is here, then write it: a line is never half written.
        let mut at = 2;
        let mut spans = [(0usize, -1i32); 32];
        for span in spans.iter_mut().take(self.kinds.len()) {
            if buf.len() < at + 4 {
                return Ok(None);
            }
            let len = i32::from_be_bytes(buf[at..at + 4].try_into().expect("4 bytes"));
            at += 4;
            *span = (at, len);
            if len > 0 {
                at += len as usize;
            }
            if buf.len() < at {
                return Ok(None);
            }
        }
        for (kind, &(start, len)) in self.kinds.iter().zip(spans.iter()) {
            let value = &buf[start..start + len.max(0) as usize];
            let written = match kind {
                _ if len < 0 => out.write_field(b""),
                Kind::Text => out.write_field(value),
                Kind::Uuid => out.write_field(uuid_text(value)?),
                Kind::Int => out.write_field(int_text(value)?),
                Kind::Time => out.write_field(time_text(value)?),
            };
            written.map_err(csv_failed)?;
        }
        out.write_record(None::<&[u8]>).map_err(csv_failed)?;
        Ok(Some(at))
    }
}

fn uuid_text(value: &[u8]) -> Result<[u8; uuid::fmt::Hyphenated::LENGTH], sqlx::Error> {
    let uuid = uuid::Uuid::from_slice(value).map_err(|_| protocol("a uuid is not 16 bytes"))?;
    let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
    uuid.hyphenated().encode_lower(&mut text);
    Ok(text)
}

fn int_text(value: &[u8]) -> Result<String, sqlx::Error> {
    let n = i32::from_be_bytes(value.try_into().map_err(|_| protocol("an integer is not 4 bytes"))?);
    Ok(n.to_string())
}

fn digits(out: &mut [u8], n: u32) {
    let mut n = n;
    for slot in out.iter_mut().rev() {
        *slot = b'0' + (n % 10) as u8;
        n /= 10;
    }
}

/// As the API writes times: 2026-10-01T05:17:00.123Z.
fn time_text(value: &[u8]) -> Result<[u8; 24], sqlx::Error> {
    let us = i64::from_be_bytes(value.try_into().map_err(|_| protocol("a timestamp is not 8 bytes"))?);
    let Some(t) = DateTime::from_timestamp_micros(us.saturating_add(PG_EPOCH_US)) else {
        return Err(protocol("a timestamp is out of range"));
    };
    let mut text = *b"0000-00-00T00:00:00.000Z";
    digits(&mut text[0..4], t.year().max(0) as u32);
    digits(&mut text[5..7], t.month());
    digits(&mut text[8..10], t.day());
    digits(&mut text[11..13], t.hour());
    digits(&mut text[14..16], t.minute());
    digits(&mut text[17..19], t.second());
    digits(&mut text[20..23], t.timestamp_subsec_millis());
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_split_anywhere_decode_to_the_same_csv() {
        let mut copy = SIGNATURE.to_vec();
        copy.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0]);
        for (text, micros, n) in [("a,\"b\"", 0i64, 7i32), ("plain", 86_400_000_000 + 123_000, -3)] {
            copy.extend_from_slice(&3i16.to_be_bytes());
            copy.extend_from_slice(&(text.len() as i32).to_be_bytes());
            copy.extend_from_slice(text.as_bytes());
            copy.extend_from_slice(&8i32.to_be_bytes());
            copy.extend_from_slice(&micros.to_be_bytes());
            copy.extend_from_slice(&4i32.to_be_bytes());
            copy.extend_from_slice(&n.to_be_bytes());
        }
        copy.extend_from_slice(&3i16.to_be_bytes());
        copy.extend_from_slice(&(-1i32).to_be_bytes().repeat(3));
        copy.extend_from_slice(&(-1i16).to_be_bytes());
        let expected = "\"a,\"\"b\"\"\",2000-01-01T00:00:00.000Z,7\r\nplain,2000-01-02T00:00:00.123Z,-3\r\n,,\r\n";
        for split in 1..copy.len() {
            let mut decoder = Decoder { kinds: vec![Kind::Text, Kind::Time, Kind::Int], pending: BytesMut::new(), header_seen: false, finished: false };
            let mut out = csv_writer(Vec::new());
            decoder.feed(&copy[..split], &mut out).unwrap();
            decoder.feed(&copy[split..], &mut out).unwrap();
            assert_eq!(std::str::from_utf8(&csv_bytes(out).unwrap()).unwrap(), expected, "split at {split}");
            assert!(decoder.finished);
        }
    }
}
