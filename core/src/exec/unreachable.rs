//! Why a target could not be reached, in the words an on-call engineer
//! needs at 3 a.m.: the driver's error (SQLSTATE, I/O error kind, TLS
//! message) classified into a [`ConnectFailure`], and a [`ConnectDiagnosis`]
//! saying what failed, the likely cause and what to check next.
//!
//! It reads only what the error says: it never retries, never connects
//! elsewhere and never sees the URL's password (the caller passes the
//! redacted target name and the already-redacted message).

use serde::{Deserialize, Serialize};

/// What kind of connection failure the driver reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectFailure {
    /// Nothing listens at the address (TCP RST): the server is down, or the
    /// host/port is wrong.
    Refused,
    /// The host name does not resolve.
    Dns,
    /// No answer in time: a firewall drops packets, the host is down, or
    /// the server is stuck.
    Timeout,
    /// SQLSTATE 57P03: the database system is starting up (crash recovery
    /// or a restart).
    StartingUp,
    /// SQLSTATE 57P03: the database system is shutting down.
    ShuttingDown,
    /// SQLSTATE 57P03: the server is in recovery and does not accept
    /// connections (a standby with `hot_standby = off`, or crash recovery).
    InRecovery,
    /// SQLSTATE 53300: too many connections, or only reserved slots left.
    TooManyConnections,
    /// SQLSTATE 28P01: password authentication failed.
    AuthFailed,
    /// SQLSTATE 28000 "no pg_hba.conf entry": this client, user and
    /// database are not allowed in.
    NoHbaEntry,
    /// SQLSTATE 28000: the role does not exist.
    NoRole,
    /// SQLSTATE 3D000: the database does not exist.
    NoDatabase,
    /// The server's TLS certificate has expired (or is not yet valid).
    TlsCertificateExpired,
    /// The server's certificate is signed by a CA this client does not
    /// trust.
    TlsUnknownCa,
    /// The server's certificate does not name the host connected to.
    TlsHostnameMismatch,
    /// Another TLS failure (handshake, the server refusing TLS, ...).
    Tls,
    /// The driver's error fits none of the above; its message says what it
    /// can.
    Unknown,
}

impl ConnectFailure {
    /// Classifies a driver error from its SQLSTATE, its I/O error kind and
    /// its (redacted) message. The SQLSTATE decides where there is one;
    /// the message only tells apart what one code covers.
    pub fn classify(
        sqlstate: Option<&str>,
        io: Option<std::io::ErrorKind>,
        tls: bool,
        message: &str,
    ) -> ConnectFailure {
        let m = message.to_ascii_lowercase();
        match sqlstate {
            Some("57P03") if m.contains("shutting down") => return ConnectFailure::ShuttingDown,
            // "in recovery mode"; "not accepting connections" is a standby
            // with hot_standby = off ("not yet accepting": still reaching a
            // consistent state, i.e. starting up).
            Some("57P03")
                if m.contains("recovery")
                    || m.contains("hot standby")
                    || (m.contains("not accepting connections") && !m.contains("not yet")) =>
            {
                return ConnectFailure::InRecovery;
            }
            Some("57P03") => return ConnectFailure::StartingUp,
            Some("53300") => return ConnectFailure::TooManyConnections,
            Some("28P01") => return ConnectFailure::AuthFailed,
            Some("28000") if m.contains("pg_hba.conf") => return ConnectFailure::NoHbaEntry,
            Some("28000") if m.contains("role") && m.contains("does not exist") => {
                return ConnectFailure::NoRole;
            }
            Some("28000") => return ConnectFailure::AuthFailed,
            Some("3D000") => return ConnectFailure::NoDatabase,
            _ => {}
        }
        let certificate = m.contains("certificate") || m.contains("cert");
        if certificate && (m.contains("expired") || m.contains("notvalidyet")) {
            return ConnectFailure::TlsCertificateExpired;
        }
        if certificate
            && (m.contains("unknownissuer")
                || m.contains("unknown ca")
                || m.contains("unable to get local issuer")
                || m.contains("self signed")
                || m.contains("self-signed"))
        {
            return ConnectFailure::TlsUnknownCa;
        }
        if m.contains("notvalidforname")
            || m.contains("hostname mismatch")
            || m.contains("not valid for name")
        {
            return ConnectFailure::TlsHostnameMismatch;
        }
        if tls || m.contains("tls") || m.contains("ssl") {
            return ConnectFailure::Tls;
        }
        if m.contains("failed to lookup address")
            || m.contains("name or service not known")
            || m.contains("nodename nor servname")
            || m.contains("no such host")
            || m.contains("temporary failure in name resolution")
        {
            return ConnectFailure::Dns;
        }
        match io {
            Some(std::io::ErrorKind::ConnectionRefused) => ConnectFailure::Refused,
            Some(std::io::ErrorKind::TimedOut) => ConnectFailure::Timeout,
            _ if m.contains("connection refused") => ConnectFailure::Refused,
            _ if m.contains("timed out") => ConnectFailure::Timeout,
            _ => ConnectFailure::Unknown,
        }
    }

    /// The snake_case name the log uses (`too_many_connections`).
    pub fn name(self) -> &'static str {
        match self {
            ConnectFailure::Refused => "refused",
            ConnectFailure::Dns => "dns",
            ConnectFailure::Timeout => "timeout",
            ConnectFailure::StartingUp => "starting_up",
            ConnectFailure::ShuttingDown => "shutting_down",
            ConnectFailure::InRecovery => "in_recovery",
            ConnectFailure::TooManyConnections => "too_many_connections",
            ConnectFailure::AuthFailed => "auth_failed",
            ConnectFailure::NoHbaEntry => "no_hba_entry",
            ConnectFailure::NoRole => "no_role",
            ConnectFailure::NoDatabase => "no_database",
            ConnectFailure::TlsCertificateExpired => "tls_certificate_expired",
            ConnectFailure::TlsUnknownCa => "tls_unknown_ca",
            ConnectFailure::TlsHostnameMismatch => "tls_hostname_mismatch",
            ConnectFailure::Tls => "tls",
            ConnectFailure::Unknown => "unknown",
        }
    }

    /// What failed, in a few words.
    pub fn what(self) -> &'static str {
        match self {
            ConnectFailure::Refused => "connection refused: nothing listens at that address",
            ConnectFailure::Dns => "the host name does not resolve",
            ConnectFailure::Timeout => "the server did not answer in time",
            ConnectFailure::StartingUp => "the server is starting up",
            ConnectFailure::ShuttingDown => "the server is shutting down",
            ConnectFailure::InRecovery => "the server is in recovery and refuses connections",
            ConnectFailure::TooManyConnections => "the server has no connection slot left",
            ConnectFailure::AuthFailed => "authentication failed",
            ConnectFailure::NoHbaEntry => "pg_hba.conf has no entry for this connection",
            ConnectFailure::NoRole => "the role does not exist",
            ConnectFailure::NoDatabase => "the database does not exist",
            ConnectFailure::TlsCertificateExpired => "the server's TLS certificate has expired",
            ConnectFailure::TlsUnknownCa => {
                "the server's TLS certificate is signed by an untrusted CA"
            }
            ConnectFailure::TlsHostnameMismatch => {
                "the server's TLS certificate does not name this host"
            }
            ConnectFailure::Tls => "the TLS handshake failed",
            ConnectFailure::Unknown => "the connection failed",
        }
    }

    /// The likely cause.
    fn cause(self) -> &'static str {
        match self {
            ConnectFailure::Refused => {
                "PostgreSQL is not running on that host and port (crashed, stopped, or failed over to another node), or the URL names the wrong port"
            }
            ConnectFailure::Dns => {
                "the host name in the URL is wrong, or a DNS record (e.g. a failover CNAME or a cluster endpoint) was removed or not yet propagated"
            }
            ConnectFailure::Timeout => {
                "the host is down or unreachable (a firewall or security group dropping packets), or the server is too overloaded to answer"
            }
            ConnectFailure::StartingUp => {
                "the server is replaying WAL after a crash or restart; it accepts connections when recovery ends"
            }
            ConnectFailure::ShuttingDown => {
                "a shutdown is in progress (maintenance, a failover, or an operator's pg_ctl stop)"
            }
            ConnectFailure::InRecovery => {
                "this node is a standby with hot_standby = off, or still in crash recovery; the primary may have moved"
            }
            ConnectFailure::TooManyConnections => {
                "max_connections is used up (a connection leak, a pool sized too large, or idle sessions piling up); only superuser-reserved slots are left"
            }
            ConnectFailure::AuthFailed => {
                "the password is wrong or expired (rolvaliduntil), the secret was rotated, or the role lost LOGIN"
            }
            ConnectFailure::NoHbaEntry => {
                "pg_hba.conf does not allow this client address, user and database (or requires TLS this connection did not use)"
            }
            ConnectFailure::NoRole => "the user in the URL is not a role on this server",
            ConnectFailure::NoDatabase => {
                "the database name in the URL is wrong, or the database was dropped or renamed"
            }
            ConnectFailure::TlsCertificateExpired => {
                "the server certificate's validity ended (or the client clock is wrong)"
            }
            ConnectFailure::TlsUnknownCa => {
                "the server certificate's CA is not in this client's trust store (sslrootcert), or the server uses a self-signed certificate"
            }
            ConnectFailure::TlsHostnameMismatch => {
                "the URL's host is not in the certificate's names (connected by IP or through another DNS name)"
            }
            ConnectFailure::Tls => {
                "TLS is required by one side and refused by the other, or the certificate or protocol versions do not match"
            }
            ConnectFailure::Unknown => "see the driver's message",
        }
    }

    /// What to check next, most likely first.
    fn checks(self, host: &str) -> Vec<String> {
        let s = |v: &[&str]| v.iter().map(ToString::to_string).collect::<Vec<_>>();
        match self {
            ConnectFailure::Refused => vec![
                format!("is PostgreSQL running on {host}? (systemctl status postgresql, pg_ctl status, or the provider's console)"),
                "the server log for a crash or shutdown in the last minutes".into(),
                "whether a failover moved the primary: connect to the other node and run `ward run pg-failover`".into(),
                "the port in the URL against the server's `port` setting".into(),
            ],
            ConnectFailure::Dns => vec![
                format!("resolve it by hand: getent hosts {host} (or dig)"),
                "the DNS record / cluster endpoint after any failover".into(),
                "a typo in the URL's host".into(),
            ],
            ConnectFailure::Timeout => vec![
                format!("whether the host answers at all: ping {host}, nc -vz on the port"),
                "firewall rules and security groups between this machine and the server".into(),
                "the server's load (CPU, IO) from its monitoring".into(),
            ],
            ConnectFailure::StartingUp => s(&[
                "the server log: recovery progress (\"redo starts at\", \"redo done\")",
                "why it restarted: an OOM kill (dmesg, the kernel log) or a crash in the server log",
                "try again in a minute; run `ward run pg-failover` once it answers",
            ]),
            ConnectFailure::ShuttingDown => s(&[
                "who stopped it: the server log, maintenance windows, the HA manager (Patroni, repmgr, the provider)",
                "whether a standby is being promoted: `ward run pg-failover` on it",
            ]),
            ConnectFailure::InRecovery => s(&[
                "which node is the primary now (the HA manager, or `ward run pg-failover` on each node)",
                "hot_standby on this node, if reads from it are expected",
            ]),
            ConnectFailure::TooManyConnections => s(&[
                "who holds the slots: as a superuser (reserved slots), SELECT usename, application_name, state, count(*) FROM pg_stat_activity GROUP BY 1, 2, 3 ORDER BY 4 DESC",
                "then `ward run pg-connection-exhaustion` with a role that can still connect",
                "pool sizes (pgbouncer, application pools) against max_connections",
            ]),
            ConnectFailure::AuthFailed => s(&[
                "the password in the environment variable against the secret store (rotated?)",
                "the role: SELECT rolname, rolcanlogin, rolvaliduntil FROM pg_roles WHERE rolname = '<user>'",
                "the server log line for this attempt: it names the pg_hba.conf line and method used",
            ]),
            ConnectFailure::NoHbaEntry => s(&[
                "pg_hba.conf (SELECT * FROM pg_hba_file_rules) for this client address, user and database",
                "whether the rule needs TLS (hostssl) and the URL has sslmode=disable",
                "reload after a change: SELECT pg_reload_conf()",
            ]),
            ConnectFailure::NoRole => s(&[
                "the user in the URL (case matters for quoted names)",
                "SELECT rolname FROM pg_roles on a connection that works",
            ]),
            ConnectFailure::NoDatabase => s(&[
                "the database name in the URL",
                "SELECT datname FROM pg_database on a connection that works (psql -l)",
            ]),
            ConnectFailure::TlsCertificateExpired => vec![
                format!("the certificate dates: openssl s_client -starttls postgres -connect {host}:5432 | openssl x509 -noout -dates"),
                "renew the server certificate (ssl_cert_file) and reload".into(),
                "this machine's clock".into(),
            ],
            ConnectFailure::TlsUnknownCa => s(&[
                "sslrootcert in the URL: does it hold the CA that signed the server certificate (the provider's CA bundle on RDS/Cloud SQL/Azure)?",
                "whether the server certificate was replaced by one from another CA",
            ]),
            ConnectFailure::TlsHostnameMismatch => s(&[
                "the certificate's names (openssl x509 -noout -ext subjectAltName) against the URL's host",
                "connect through a name the certificate lists",
            ]),
            ConnectFailure::Tls => s(&[
                "sslmode in the URL against the server's ssl setting and pg_hba.conf (hostssl / hostnossl)",
                "the server log for the handshake error",
            ]),
            ConnectFailure::Unknown => s(&[
                "the driver's message above",
                "the server log at the time of the attempt",
            ]),
        }
    }
}

impl std::fmt::Display for ConnectFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A connection failure diagnosed: what failed, the likely cause and what
/// to check next, as the session log records it (in a `failed` event).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectDiagnosis {
    pub failure: ConnectFailure,
    /// The server's SQLSTATE, when it answered with an error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sqlstate: Option<String>,
    /// What failed, in words.
    pub what: String,
    /// The likely cause.
    pub cause: String,
    /// What to check next, most likely first.
    pub checks: Vec<String>,
}

impl ConnectDiagnosis {
    /// The diagnosis of `failure` when connecting to `host` (a host name
    /// or address, never a URL).
    pub fn new(failure: ConnectFailure, sqlstate: Option<String>, host: &str) -> ConnectDiagnosis {
        ConnectDiagnosis {
            failure,
            sqlstate,
            what: failure.what().to_string(),
            cause: failure.cause().to_string(),
            checks: failure.checks(host),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::ErrorKind;

    #[test]
    fn server_errors_are_classified_by_sqlstate_then_message() {
        let cases = [
            (
                "57P03",
                "the database system is starting up",
                ConnectFailure::StartingUp,
            ),
            (
                "57P03",
                "the database system is shutting down",
                ConnectFailure::ShuttingDown,
            ),
            (
                "57P03",
                "the database system is in recovery mode",
                ConnectFailure::InRecovery,
            ),
            (
                "57P03",
                "the database system is not accepting connections",
                ConnectFailure::InRecovery,
            ),
            (
                "57P03",
                "the database system is not yet accepting connections",
                ConnectFailure::StartingUp,
            ),
            (
                "53300",
                "sorry, too many clients already",
                ConnectFailure::TooManyConnections,
            ),
            (
                "53300",
                "remaining connection slots are reserved for roles with the SUPERUSER attribute",
                ConnectFailure::TooManyConnections,
            ),
            (
                "28P01",
                "password authentication failed for user \"app\"",
                ConnectFailure::AuthFailed,
            ),
            (
                "28000",
                "no pg_hba.conf entry for host \"10.0.0.5\", user \"app\", database \"orders\", no encryption",
                ConnectFailure::NoHbaEntry,
            ),
            (
                "28000",
                "role \"ghost\" does not exist",
                ConnectFailure::NoRole,
            ),
            (
                "3D000",
                "database \"nope\" does not exist",
                ConnectFailure::NoDatabase,
            ),
        ];
        for (code, message, want) in cases {
            assert_eq!(
                ConnectFailure::classify(Some(code), None, false, message),
                want,
                "{code} {message}"
            );
        }
    }

    #[test]
    fn network_and_tls_errors_are_classified_from_the_io_kind_and_message() {
        let cases = [
            (
                Some(ErrorKind::ConnectionRefused),
                false,
                "error communicating with database: Connection refused (os error 111)",
                ConnectFailure::Refused,
            ),
            (
                None,
                false,
                "error communicating with database: failed to lookup address information: Name or service not known",
                ConnectFailure::Dns,
            ),
            (
                Some(ErrorKind::TimedOut),
                false,
                "timed out after 15s",
                ConnectFailure::Timeout,
            ),
            (
                None,
                true,
                "error occurred while attempting to establish a TLS connection: invalid peer certificate: Expired",
                ConnectFailure::TlsCertificateExpired,
            ),
            (
                None,
                true,
                "invalid peer certificate: UnknownIssuer",
                ConnectFailure::TlsUnknownCa,
            ),
            (
                None,
                true,
                "invalid peer certificate: NotValidForName",
                ConnectFailure::TlsHostnameMismatch,
            ),
            (
                None,
                false,
                "certificate verify failed: certificate has expired",
                ConnectFailure::TlsCertificateExpired,
            ),
            (
                None,
                true,
                "server does not support TLS",
                ConnectFailure::Tls,
            ),
            (None, false, "something else", ConnectFailure::Unknown),
        ];
        for (io, tls, message, want) in cases {
            assert_eq!(
                ConnectFailure::classify(None, io, tls, message),
                want,
                "{message}"
            );
        }
    }

    #[test]
    fn a_diagnosis_names_the_host_it_tells_you_to_check() {
        let d = ConnectDiagnosis::new(ConnectFailure::Refused, None, "db1.internal");
        assert_eq!(
            d.what,
            "connection refused: nothing listens at that address"
        );
        assert!(d.checks[0].contains("db1.internal"), "{:?}", d.checks);
        assert!(d.checks.iter().any(|c| c.contains("pg-failover")));
    }
}
