//! Turning database values into JSON, for any column type a diagnostic may
//! return. Postgres values arrive in the binary wire format; the common types
//! are decoded here from their documented layouts, and anything else becomes
//! a `<type>` marker rather than an error.

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, TimeDelta};
use serde_json::{Number, Value, json};
use sqlx::postgres::{PgRow, PgValueFormat};
use sqlx::{Row as _, ValueRef as _};

use super::{Column, Row};

fn be<const N: usize>(b: &[u8]) -> Option<[u8; N]> {
    b.get(..N)?.try_into().ok()
}

fn float(f: f64) -> Value {
    Number::from_f64(f).map_or_else(|| Value::String(f.to_string()), Value::Number)
}

/// 2000-01-01, the Postgres epoch.
fn pg_epoch() -> NaiveDateTime {
    NaiveDate::from_ymd_opt(2000, 1, 1)
        .unwrap_or_default()
        .and_time(NaiveTime::MIN)
}

/// NUMERIC: ndigits, weight, sign, dscale, then base-10000 digits.
fn numeric(b: &[u8]) -> Option<Value> {
    let ndigits = i16::from_be_bytes(be(b)?);
    let weight = i16::from_be_bytes(be(b.get(2..)?)?);
    let sign = u16::from_be_bytes(be(b.get(4..)?)?);
    let dscale = u16::from_be_bytes(be(b.get(6..)?)?);
    if sign == 0xC000 {
        return Some(Value::String("NaN".into()));
    }
    if sign == 0xD000 || sign == 0xF000 {
        return Some(Value::String(
            if sign == 0xD000 {
                "Infinity"
            } else {
                "-Infinity"
            }
            .into(),
        ));
    }
    let mut digits = Vec::with_capacity(usize::try_from(ndigits).ok()?);
    for i in 0..usize::try_from(ndigits).ok()? {
        digits.push(i16::from_be_bytes(be(b.get(8 + 2 * i..)?)?));
    }
    // Render as a decimal string exactly, then let JSON carry it as a number.
    let mut int_part = String::new();
    let mut frac_part = String::new();
    for (i, d) in digits.iter().enumerate() {
        let pos = i32::from(weight) - i32::try_from(i).ok()?;
        if pos >= 0 {
            if int_part.is_empty() {
                int_part.push_str(&d.to_string());
            } else {
                int_part.push_str(&format!("{d:04}"));
            }
        } else {
            frac_part.push_str(&format!("{d:04}"));
        }
    }
    // Missing integer groups (weight beyond the digits) are zeros.
    let last_pos = i32::from(weight) - i32::try_from(digits.len()).ok()? + 1;
    if last_pos > 0 && !int_part.is_empty() {
        for _ in 0..last_pos {
            int_part.push_str("0000");
        }
    }
    // Leading fractional zeros when weight < -1.
    if weight < -1 {
        let zeros = "0000".repeat(usize::try_from(-i32::from(weight) - 1).ok()?);
        frac_part = zeros + &frac_part;
    }
    if int_part.is_empty() {
        int_part.push('0');
    }
    let scale = usize::from(dscale);
    while frac_part.len() < scale {
        frac_part.push('0');
    }
    frac_part.truncate(scale);
    let text = format!(
        "{}{}{}{}",
        if sign == 0x4000 { "-" } else { "" },
        int_part,
        if scale > 0 { "." } else { "" },
        frac_part
    );
    Some(match text.parse::<f64>() {
        Ok(f) if f.is_finite() && (scale > 0 || int_part.len() < 16) => {
            if scale == 0 {
                text.parse::<i64>()
                    .map(Value::from)
                    .unwrap_or_else(|_| float(f))
            } else {
                float(f)
            }
        }
        _ => Value::String(text),
    })
}

fn interval(b: &[u8]) -> Option<Value> {
    let micros = i64::from_be_bytes(be(b)?);
    let days = i32::from_be_bytes(be(b.get(8..)?)?);
    let months = i32::from_be_bytes(be(b.get(12..)?)?);
    let mut parts = Vec::new();
    if months != 0 {
        parts.push(format!("{months} mons"));
    }
    if days != 0 {
        parts.push(format!("{days} days"));
    }
    if micros != 0 || parts.is_empty() {
        let sign = if micros < 0 { "-" } else { "" };
        let m = micros.unsigned_abs();
        let (h, rem) = (m / 3_600_000_000, m % 3_600_000_000);
        let (min, rem) = (rem / 60_000_000, rem % 60_000_000);
        let (s, us) = (rem / 1_000_000, rem % 1_000_000);
        parts.push(if us == 0 {
            format!("{sign}{h:02}:{min:02}:{s:02}")
        } else {
            format!("{sign}{h:02}:{min:02}:{s:02}.{us:06}")
        });
    }
    Some(Value::String(parts.join(" ")))
}

fn inet(b: &[u8]) -> Option<Value> {
    let family = *b.first()?;
    let bits = *b.get(1)?;
    let len = usize::from(*b.get(3)?);
    let addr = b.get(4..4 + len)?;
    let text = match family {
        2 if len == 4 => std::net::Ipv4Addr::new(addr[0], addr[1], addr[2], addr[3]).to_string(),
        3 if len == 16 => std::net::Ipv6Addr::from(<[u8; 16]>::try_from(addr).ok()?).to_string(),
        _ => return None,
    };
    let full = if family == 2 { 32 } else { 128 };
    Some(Value::String(if bits == full {
        text
    } else {
        format!("{text}/{bits}")
    }))
}

fn uuid(b: &[u8]) -> Option<Value> {
    let h: String = b.get(..16)?.iter().map(|x| format!("{x:02x}")).collect();
    Some(Value::String(format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )))
}

/// One-dimensional arrays of simple element types.
fn array(b: &[u8], depth: u8) -> Option<Value> {
    let ndim = i32::from_be_bytes(be(b)?);
    if ndim == 0 {
        return Some(json!([]));
    }
    if ndim != 1 || depth > 0 {
        return None;
    }
    let elem_oid = u32::from_be_bytes(be(b.get(8..)?)?);
    let n = usize::try_from(i32::from_be_bytes(be(b.get(12..)?)?)).ok()?;
    let mut at = 20;
    let mut out = Vec::with_capacity(n.min(10_000));
    for _ in 0..n {
        let len = i32::from_be_bytes(be(b.get(at..)?)?);
        at += 4;
        if len < 0 {
            out.push(Value::Null);
            continue;
        }
        let len = usize::try_from(len).ok()?;
        let bytes = b.get(at..at + len)?;
        at += len;
        out.push(by_oid(elem_oid, bytes).unwrap_or(Value::Null));
    }
    Some(Value::Array(out))
}

/// Decodes binary bytes for a type OID; `None` when unknown or malformed.
fn by_oid(oid: u32, b: &[u8]) -> Option<Value> {
    Some(match oid {
        16 => Value::Bool(*b.first()? != 0),
        18 => Value::String(char::from(*b.first()?).to_string()),
        20 => Value::from(i64::from_be_bytes(be(b)?)),
        21 => Value::from(i16::from_be_bytes(be(b)?)),
        23 => Value::from(i32::from_be_bytes(be(b)?)),
        // oid, regproc, xid, cid, regclass, regtype, ... (unsigned 4-byte)
        26 | 24 | 28 | 29 | 2202 | 2203 | 2204 | 2205 | 2206 | 3734 | 3769 | 4089 | 4096 => {
            Value::from(u32::from_be_bytes(be(b)?))
        }
        5069 => Value::from(u64::from_be_bytes(be(b)?)), // xid8
        700 => float(f64::from(f32::from_be_bytes(be(b)?))),
        701 => float(f64::from_be_bytes(be(b)?)),
        1700 => numeric(b)?,
        // text, varchar, bpchar, name, unknown, citext-like
        25 | 1043 | 1042 | 19 | 705 => Value::String(String::from_utf8_lossy(b).into_owned()),
        114 => serde_json::from_slice(b).ok()?,
        3802 => serde_json::from_slice(b.get(1..)?).ok()?,
        1082 => {
            let days = i32::from_be_bytes(be(b)?);
            Value::String((pg_epoch().date() + TimeDelta::try_days(i64::from(days))?).to_string())
        }
        1083 => {
            let us = i64::from_be_bytes(be(b)?);
            Value::String((NaiveTime::MIN + TimeDelta::microseconds(us)).to_string())
        }
        1114 => {
            let us = i64::from_be_bytes(be(b)?);
            Value::String(
                (pg_epoch() + TimeDelta::microseconds(us))
                    .format("%Y-%m-%d %H:%M:%S%.f")
                    .to_string(),
            )
        }
        1184 => {
            let us = i64::from_be_bytes(be(b)?);
            let t = DateTime::<chrono::Utc>::from_naive_utc_and_offset(
                pg_epoch() + TimeDelta::microseconds(us),
                chrono::Utc,
            );
            Value::String(t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
        }
        1186 => interval(b)?,
        869 | 650 => inet(b)?,
        2950 => uuid(b)?,
        3220 => {
            let lsn = u64::from_be_bytes(be(b)?);
            Value::String(format!("{:X}/{:X}", lsn >> 32, lsn & 0xFFFF_FFFF))
        }
        17 => Value::String(format!(
            "\\x{}",
            b.iter()
                .take(64)
                .map(|x| format!("{x:02x}"))
                .collect::<String>()
        )),
        // arrays of the above
        1000 | 1005 | 1007 | 1016 | 1009 | 1015 | 1002 | 1021 | 1022 | 1028 | 1003 | 1231
        | 1041 | 2951 | 1182 | 1115 | 1185 => array(b, 0)?,
        _ => return None,
    })
}

/// Columns of a Postgres row.
pub(super) fn pg_columns(row: &PgRow) -> Vec<Column> {
    super::columns_of(row.columns())
}

/// A Postgres row as JSON.
pub(super) fn pg_row(row: &PgRow, columns: &[Column]) -> Row {
    let mut out = Row::with_capacity(columns.len());
    for (i, col) in columns.iter().enumerate() {
        let value = match row.try_get_raw(i) {
            Err(_) => Value::Null,
            Ok(v) if v.is_null() => Value::Null,
            Ok(v) => {
                let oid = v.type_info().oid().map(|o| o.0);
                match (v.format(), v.as_bytes()) {
                    (PgValueFormat::Text, Ok(b)) => {
                        Value::String(String::from_utf8_lossy(b).into_owned())
                    }
                    (PgValueFormat::Binary, Ok(b)) => oid
                        .and_then(|o| by_oid(o, b))
                        .unwrap_or_else(|| Value::String(format!("<{}>", col.type_name))),
                    (_, Err(_)) => Value::Null,
                }
            }
        };
        out.insert(col.name.clone(), value);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn num(ndigits: i16, weight: i16, sign: u16, dscale: u16, digits: &[i16]) -> Vec<u8> {
        let mut b = Vec::new();
        for x in [ndigits, weight] {
            b.extend_from_slice(&x.to_be_bytes());
        }
        b.extend_from_slice(&sign.to_be_bytes());
        b.extend_from_slice(&dscale.to_be_bytes());
        for d in digits {
            b.extend_from_slice(&d.to_be_bytes());
        }
        b
    }

    #[test]
    fn numerics_decode_exactly() {
        assert_eq!(numeric(&num(2, 0, 0, 2, &[12, 3400])), Some(json!(12.34)));
        assert_eq!(numeric(&num(1, 1, 0, 0, &[5])), Some(json!(50000)));
        assert_eq!(
            numeric(&num(1, -2, 0x4000, 6, &[4200])),
            Some(json!(-0.000042))
        );
        assert_eq!(numeric(&num(0, 0, 0, 1, &[])), Some(json!(0.0)));
        assert_eq!(numeric(&num(0, 0, 0xC000, 0, &[])), Some(json!("NaN")));
        assert_eq!(numeric(&[1, 2]), None);
    }

    #[test]
    fn other_binary_layouts() {
        let mut iv = Vec::new();
        iv.extend_from_slice(&(90_500_000i64).to_be_bytes());
        iv.extend_from_slice(&2i32.to_be_bytes());
        iv.extend_from_slice(&0i32.to_be_bytes());
        assert_eq!(interval(&iv), Some(json!("2 days 00:01:30.500000")));
        assert_eq!(inet(&[2, 32, 0, 4, 10, 0, 0, 1]), Some(json!("10.0.0.1")));
        assert_eq!(
            by_oid(3220, &0x0000_0001_0000_00A0u64.to_be_bytes()),
            Some(json!("1/A0"))
        );
        assert_eq!(
            by_oid(1184, &0i64.to_be_bytes()),
            Some(json!("2000-01-01T00:00:00Z"))
        );
        assert_eq!(by_oid(9999, &[1, 2, 3]), None);
        assert_eq!(
            by_oid(23, &[1]),
            None,
            "short input is refused, not a panic"
        );
    }
}
