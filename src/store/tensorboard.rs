//! TensorBoard event files: scalars as `Event` protobufs in TFRecord framing (length, masked
//! CRC-32C of the length, data, masked CRC-32C of the data), the format TensorBoard and TRL's
//! `report_to="tensorboard"` write. Only the three messages scalars need are encoded here:
//! `Event { wall_time = 1 (double), step = 2 (int64), file_version = 3 (string), summary = 5 }`,
//! `Summary { value = 1 (repeated) }`, `Summary.Value { tag = 1 (string), simple_value = 2 (float) }`.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};

/// The event file's name inside a run folder (TensorBoard reads any name containing
/// `tfevents`); fixed, so a resumed run keeps writing the same file.
pub const EVENT_FILE: &str = "events.out.tfevents.trainer";

/// Appends one event holding `scalars` at `step` to the event file `path`, writing the file's
/// version header first when the file is new.
pub fn append_scalars(path: &Path, step: u64, scalars: &[(&str, f64)]) -> Result<()> {
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    let wall_time = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    let mut out = Vec::new();
    if file.metadata()?.len() == 0 {
        out.extend(record(&version_event(wall_time)));
    }
    out.extend(record(&scalar_event(wall_time, step, scalars)));
    file.write_all(&out)
        .and_then(|()| file.flush())
        .with_context(|| format!("writing {}", path.display()))
}

fn version_event(wall_time: f64) -> Vec<u8> {
    let mut event = Vec::new();
    field_double(&mut event, 1, wall_time);
    field_bytes(&mut event, 3, b"brain.Event:2");
    event
}

fn scalar_event(wall_time: f64, step: u64, scalars: &[(&str, f64)]) -> Vec<u8> {
    let mut summary = Vec::new();
    for (tag, value) in scalars {
        let mut v = Vec::new();
        field_bytes(&mut v, 1, tag.as_bytes());
        v.push(2 << 3 | 5); // field 2, fixed32
        v.extend((*value as f32).to_le_bytes());
        field_bytes(&mut summary, 1, &v);
    }
    let mut event = Vec::new();
    field_double(&mut event, 1, wall_time);
    varint(&mut event, 2 << 3); // field 2, varint
    varint(&mut event, step);
    field_bytes(&mut event, 5, &summary);
    event
}

fn field_double(out: &mut Vec<u8>, field: u64, value: f64) {
    varint(out, field << 3 | 1); // fixed64
    out.extend(value.to_le_bytes());
}

fn field_bytes(out: &mut Vec<u8>, field: u64, bytes: &[u8]) {
    varint(out, field << 3 | 2); // length-delimited
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// One TFRecord: the length, its masked CRC, the data, its masked CRC.
fn record(data: &[u8]) -> Vec<u8> {
    let len = (data.len() as u64).to_le_bytes();
    let mut out = Vec::with_capacity(data.len() + 16);
    out.extend(len);
    out.extend(masked_crc(&len).to_le_bytes());
    out.extend_from_slice(data);
    out.extend(masked_crc(data).to_le_bytes());
    out
}

/// TFRecord's masked CRC-32C.
fn masked_crc(data: &[u8]) -> u32 {
    let crc = crc32c::crc32c(data);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_is_the_castagnoli_checksum() {
        // The CRC-32C check value of "123456789" (RFC 3720, appendix B.4).
        assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
    }

    #[test]
    fn varints_use_seven_bits_per_byte() {
        let mut out = Vec::new();
        varint(&mut out, 300);
        assert_eq!(out, [0xAC, 0x02]);
    }

    #[test]
    fn a_new_file_starts_with_the_version_event_and_records_frame_their_data() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(EVENT_FILE);
        append_scalars(&path, 3, &[("train/loss", 0.5)]).unwrap();
        append_scalars(&path, 4, &[("train/loss", 0.25)]).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let mut at = 0;
        let mut records = Vec::new();
        while at < bytes.len() {
            let len = u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap()) as usize;
            let crc = u32::from_le_bytes(bytes[at + 8..at + 12].try_into().unwrap());
            assert_eq!(crc, masked_crc(&bytes[at..at + 8]));
            let data = &bytes[at + 12..at + 12 + len];
            let dcrc = u32::from_le_bytes(bytes[at + 12 + len..at + 16 + len].try_into().unwrap());
            assert_eq!(dcrc, masked_crc(data));
            records.push(data.to_vec());
            at += 16 + len;
        }
        assert_eq!(records.len(), 3, "version event, then one event per append");
        assert!(records[0].ends_with(b"brain.Event:2"));
        assert!(records[2].windows(10).any(|w| w == b"train/loss"));
        assert!(records[2].windows(4).any(|w| w == 0.25f32.to_le_bytes()));
    }
}
