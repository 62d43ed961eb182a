//! Prometheus Alertmanager webhooks (payload version 4) and what `ward
//! serve` makes of them: which runbook an alert starts (its `alertname`
//! among a runbook's `triggers`), which `ward.yaml` target it is about
//! (its labels, through the routes of `alerts:` in `ward.yaml`), and
//! whether the same alert was already handled within the de-duplication
//! window (by Alertmanager's fingerprint).
//!
//! This module decides; it never starts a session, opens a socket or
//! prints. Everything in a payload is untrusted: it only ever selects a
//! runbook and a target by exact name; no label or annotation reaches SQL,
//! a shell or a runbook input.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use serde::Deserialize;

/// The webhook body Alertmanager POSTs (`version: "4"`): only what ward
/// reads; the other fields of the payload (group key, receiver, group and
/// common labels, annotations, times, URLs) are ignored.
#[derive(Debug, Clone, Deserialize)]
pub struct Payload {
    pub version: String,
    pub status: AlertStatus,
    pub alerts: Vec<Alert>,
}

/// One alert of a [`Payload`].
#[derive(Debug, Clone, Deserialize)]
pub struct Alert {
    pub status: AlertStatus,
    pub labels: BTreeMap<String, String>,
    /// Alertmanager's identity of the alert (a hash of its labels).
    #[serde(default)]
    pub fingerprint: String,
}

impl Alert {
    /// The alert's name (`labels.alertname`), empty when missing.
    pub fn name(&self) -> &str {
        self.labels.get("alertname").map_or("", String::as_str)
    }

    /// The fingerprint, or (when Alertmanager sent none) the sorted labels.
    pub fn identity(&self) -> String {
        if self.fingerprint.is_empty() {
            self.labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",")
        } else {
            self.fingerprint.clone()
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertStatus {
    Firing,
    Resolved,
}

/// Why a body is not a payload ward accepts (answered with 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    #[error(
        "the body is not an Alertmanager webhook payload: {message} at line {line}, column {column}"
    )]
    Malformed {
        message: String,
        line: usize,
        column: usize,
    },
    #[error(
        "payload version {0:?} is not supported; ward reads Alertmanager's webhook version \"4\""
    )]
    Version(String),
    #[error("the payload has no alerts")]
    Empty,
}

/// Reads a webhook body.
pub fn parse(body: &[u8]) -> Result<Payload, PayloadError> {
    let payload: Payload = serde_json::from_slice(body).map_err(|e| PayloadError::Malformed {
        message: e
            .to_string()
            .split(" at line ")
            .next()
            .unwrap_or_default()
            .to_string(),
        line: e.line(),
        column: e.column(),
    })?;
    if payload.version != "4" {
        return Err(PayloadError::Version(payload.version));
    }
    if payload.alerts.is_empty() {
        return Err(PayloadError::Empty);
    }
    Ok(payload)
}

/// `alerts:` in `ward.yaml`: how `ward serve` maps alerts to targets and
/// how it paces the sessions it starts.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsSpec {
    /// Label routes, first match wins. An alert carrying the label
    /// `ward_target` naming a target needs no route.
    #[serde(default)]
    pub routes: Vec<Route>,
    /// At most this many sessions run at once (default 2); the rest queue.
    #[serde(default)]
    pub concurrency: Option<usize>,
    /// The same alert (fingerprint) firing again within this window starts
    /// nothing new (default `10m`).
    #[serde(default)]
    pub dedup_window: Option<String>,
}

/// One route: every label in `match` must equal the alert's.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    #[serde(rename = "match")]
    pub matchers: BTreeMap<String, String>,
    pub target: String,
}

/// The label an alert can name its target with directly.
pub const TARGET_LABEL: &str = "ward_target";

/// The target an alert is about: its `ward_target` label when that names
/// a known target, else the first route whose labels all match; None when
/// nothing maps it.
pub fn target_for<'a>(
    alert: &Alert,
    routes: &'a [Route],
    known: &'a BTreeMap<String, crate::config::TargetSpec>,
) -> Option<&'a str> {
    if let Some(name) = alert.labels.get(TARGET_LABEL)
        && let Some((known_name, _)) = known.get_key_value(name)
    {
        return Some(known_name.as_str());
    }
    routes
        .iter()
        .find(|r| {
            r.matchers
                .iter()
                .all(|(k, v)| alert.labels.get(k).is_some_and(|got| got == v))
        })
        .map(|r| r.target.as_str())
}

/// Remembers which alerts started a session, and when, to drop repeats
/// within the window (Alertmanager re-sends firing alerts every
/// `repeat_interval`, and several receivers may send the same one).
#[derive(Debug)]
pub struct Dedup {
    window: Duration,
    seen: HashMap<String, Instant>,
}

impl Dedup {
    pub fn new(window: Duration) -> Dedup {
        Dedup {
            window,
            seen: HashMap::new(),
        }
    }

    /// True the first time `key` is offered within the window (and then
    /// remembers it); false for a repeat.
    pub fn first(&mut self, key: &str, now: Instant) -> bool {
        let window = self.window;
        self.seen
            .retain(|_, at| now.saturating_duration_since(*at) < window);
        if self.seen.contains_key(key) {
            return false;
        }
        self.seen.insert(key.to_string(), now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(labels: &[(&str, &str)], fingerprint: &str) -> Alert {
        Alert {
            status: AlertStatus::Firing,
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            fingerprint: fingerprint.into(),
        }
    }

    fn targets(names: &[&str]) -> BTreeMap<String, crate::config::TargetSpec> {
        names
            .iter()
            .map(|n| {
                let spec: crate::config::TargetSpec =
                    serde_yaml::from_str("{ engine: postgres, url_env: X, environment: prod }")
                        .expect("target");
                (n.to_string(), spec)
            })
            .collect()
    }

    #[test]
    fn an_alertmanager_v4_payload_parses_with_its_alerts() {
        let body = br#"{"version":"4","groupKey":"{}:{alertname=\"PostgresLockContention\"}","truncatedAlerts":0,
            "status":"firing","receiver":"ward","groupLabels":{"alertname":"PostgresLockContention"},
            "commonLabels":{"alertname":"PostgresLockContention"},"commonAnnotations":{},"externalURL":"http://am:9093",
            "alerts":[{"status":"firing","labels":{"alertname":"PostgresLockContention","instance":"db1:5432"},
            "annotations":{"summary":"locks"},"startsAt":"2026-11-27T03:00:00Z","endsAt":"0001-01-01T00:00:00Z",
            "generatorURL":"http://prom/graph","fingerprint":"1a2b3c"}]}"#;
        let p = parse(body).expect("payload");
        assert_eq!(p.status, AlertStatus::Firing);
        assert_eq!(p.alerts.len(), 1);
        assert_eq!(p.alerts[0].name(), "PostgresLockContention");
        assert_eq!(p.alerts[0].identity(), "1a2b3c");
    }

    #[test]
    fn a_body_that_is_not_a_v4_payload_is_refused_with_a_reason() {
        assert_eq!(
            parse(br#"{"version":"3","status":"firing","alerts":[]}"#).err(),
            Some(PayloadError::Version("3".into()))
        );
        assert_eq!(
            parse(br#"{"version":"4","status":"firing","alerts":[]}"#).err(),
            Some(PayloadError::Empty)
        );
        let Err(PayloadError::Malformed { line, column, .. }) =
            parse(b"{\"version\":\"4\",\n  \"status\": 7}")
        else {
            panic!("not refused as malformed")
        };
        assert_eq!((line, column), (2, 13));
        assert!(matches!(
            parse(b"\xff\xfe"),
            Err(PayloadError::Malformed { .. })
        ));
        let err = parse(br#"{"version":"4","status":"burning","alerts":[]}"#).expect_err("status");
        assert!(
            err.to_string().contains("unknown variant `burning`"),
            "{err}"
        );
    }

    #[test]
    fn the_ward_target_label_wins_then_the_first_matching_route() {
        let known = targets(&["orders", "billing"]);
        let routes: Vec<Route> = serde_yaml::from_str(
            "[{match: {cluster: billing-prod}, target: billing}, {match: {cluster: orders-prod, role: primary}, target: orders}]",
        )
        .expect("routes");
        let named = alert(
            &[("ward_target", "orders"), ("cluster", "billing-prod")],
            "a",
        );
        assert_eq!(target_for(&named, &routes, &known), Some("orders"));
        let routed = alert(&[("cluster", "orders-prod"), ("role", "primary")], "b");
        assert_eq!(target_for(&routed, &routes, &known), Some("orders"));
        // Every label of a route must match.
        let partial = alert(&[("cluster", "orders-prod")], "c");
        assert_eq!(target_for(&partial, &routes, &known), None);
        // A ward_target naming no target falls back to the routes.
        let unknown = alert(&[("ward_target", "nope"), ("cluster", "billing-prod")], "d");
        assert_eq!(target_for(&unknown, &routes, &known), Some("billing"));
    }

    #[test]
    fn a_repeat_within_the_window_is_dropped_and_counted_again_after_it() {
        let mut d = Dedup::new(Duration::from_secs(60));
        let t0 = Instant::now();
        assert!(d.first("fp1", t0));
        assert!(!d.first("fp1", t0 + Duration::from_secs(30)));
        assert!(d.first("fp2", t0 + Duration::from_secs(30)));
        assert!(d.first("fp1", t0 + Duration::from_secs(61)));
    }
}
