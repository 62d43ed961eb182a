//! Time windows: days of the week and hours of the day in an IANA time zone.
//!
//! Evaluated on local wall-clock time in the window's zone, so "08:00-20:00
//! America/New_York" follows daylight saving time. A window whose hours wrap
//! midnight ("22:00-06:00") belongs to the day it starts on: Friday
//! 22:00-06:00 includes Saturday 03:00.

use chrono::{DateTime, Datelike, NaiveTime, Utc, Weekday};
use chrono_tz::Tz;

#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    pub days: Vec<Weekday>,
    /// Start and end of the daily span; `None` means all day.
    pub hours: Option<(NaiveTime, Option<NaiveTime>)>,
    pub tz: Tz,
}

pub fn parse_day(s: &str) -> Option<Weekday> {
    let d = match s.to_ascii_lowercase().as_str() {
        "mon" | "monday" => Weekday::Mon,
        "tue" | "tuesday" => Weekday::Tue,
        "wed" | "wednesday" => Weekday::Wed,
        "thu" | "thursday" => Weekday::Thu,
        "fri" | "friday" => Weekday::Fri,
        "sat" | "saturday" => Weekday::Sat,
        "sun" | "sunday" => Weekday::Sun,
        _ => return None,
    };
    Some(d)
}

/// Parses "HH:MM-HH:MM"; an end of "24:00" means the end of the day
/// (returned as `None`).
pub fn parse_hours(s: &str) -> Option<(NaiveTime, Option<NaiveTime>)> {
    let (a, b) = s.split_once('-')?;
    let start = NaiveTime::parse_from_str(a.trim(), "%H:%M").ok()?;
    let end = match b.trim() {
        "24:00" => None,
        e => Some(NaiveTime::parse_from_str(e, "%H:%M").ok()?),
    };
    if end == Some(start) {
        return None;
    }
    Some((start, end))
}

impl Window {
    pub fn contains(&self, at: DateTime<Utc>) -> bool {
        let local = at.with_timezone(&self.tz);
        let day_ok = |d: Weekday| self.days.is_empty() || self.days.contains(&d);
        let t = local.time();
        match self.hours {
            None => day_ok(local.weekday()),
            Some((start, None)) => t >= start && day_ok(local.weekday()),
            Some((start, Some(end))) if start < end => {
                t >= start && t < end && day_ok(local.weekday())
            }
            Some((start, Some(end))) => {
                if t >= start {
                    day_ok(local.weekday())
                } else if t < end {
                    day_ok(local.weekday().pred())
                } else {
                    false
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn peak() -> Window {
        Window {
            days: vec![
                Weekday::Mon,
                Weekday::Tue,
                Weekday::Wed,
                Weekday::Thu,
                Weekday::Fri,
            ],
            hours: parse_hours("08:00-20:00"),
            tz: "America/New_York".parse().expect("tz"),
        }
    }

    fn utc(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, h, min, 0)
            .single()
            .expect("valid time")
    }

    #[test]
    fn peak_hours_follow_new_york_wall_clock_across_dst() {
        let w = peak();
        // Summer (EDT, UTC-4): 08:00 local is 12:00 UTC.
        assert!(!w.contains(utc(2026, 7, 15, 11, 59)));
        assert!(w.contains(utc(2026, 7, 15, 12, 0)));
        // Winter (EST, UTC-5): 12:30 UTC is only 07:30 local.
        assert!(!w.contains(utc(2026, 1, 14, 12, 30)));
        assert!(w.contains(utc(2026, 1, 14, 13, 0)));
        // Day DST starts (Sun 2026-03-08) is a weekend; Monday after at 08:30 EDT.
        assert!(w.contains(utc(2026, 3, 9, 12, 30)));
        // The Monday after DST ends (2026-11-02): 08:30 EST is 13:30 UTC.
        assert!(!w.contains(utc(2026, 11, 2, 12, 30)));
        assert!(w.contains(utc(2026, 11, 2, 13, 30)));
        // 20:00 local is outside (half-open span).
        assert!(!w.contains(utc(2026, 11, 3, 1, 0)));
    }

    #[test]
    fn the_weekday_is_the_local_one_not_utc() {
        let w = peak();
        // Friday 19:30 in New York is Saturday 00:30 UTC: still peak.
        assert!(w.contains(utc(2026, 11, 21, 0, 30)));
        // Saturday 10:00 New York: not peak.
        assert!(!w.contains(utc(2026, 11, 21, 15, 0)));
        let tokyo = Window {
            tz: "Asia/Tokyo".parse().expect("tz"),
            ..peak()
        };
        // Monday 09:00 Tokyo is Monday 00:00 UTC.
        assert!(tokyo.contains(utc(2026, 11, 23, 0, 0)));
        // Sunday 09:00 Tokyo is not.
        assert!(!tokyo.contains(utc(2026, 11, 22, 0, 0)));
    }

    #[test]
    fn overnight_windows_belong_to_the_day_they_start() {
        let w = Window {
            days: vec![Weekday::Fri],
            hours: parse_hours("22:00-06:00"),
            tz: chrono_tz::UTC,
        };
        assert!(w.contains(utc(2026, 11, 20, 23, 0))); // Fri 23:00
        assert!(w.contains(utc(2026, 11, 21, 3, 0))); // Sat 03:00
        assert!(!w.contains(utc(2026, 11, 21, 23, 0))); // Sat 23:00
        assert!(!w.contains(utc(2026, 11, 20, 3, 0))); // Fri 03:00 belongs to Thursday
    }

    #[test]
    fn hours_parse_strictly() {
        assert!(parse_hours("08:00-20:00").is_some());
        assert_eq!(parse_hours("00:00-24:00").map(|h| h.1), Some(None));
        for bad in ["8-20", "08:00", "25:00-26:00", "08:00-08:00", ""] {
            assert!(parse_hours(bad).is_none(), "{bad}");
        }
    }
}
