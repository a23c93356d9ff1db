//! `ipfs-stream token create|ls|revoke`, and the first `admin` token a server makes for itself.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use model::access::{NewToken, Scopes, StoredToken, TokenService};

use crate::error::Error;

/// The file the first `admin` token is written to, in the data directory.
pub const ADMIN_TOKEN_FILE: &str = "admin.token";

/// `90s`, `15m`, `12h`, `30d`, `2w`, or plain seconds.
pub fn parse_ttl(text: &str) -> Result<Duration, Error> {
    let invalid = || {
        Error::Config(format!(
            "--ttl {text:?}: write a number and a unit: 90s, 15m, 12h, 30d, 2w"
        ))
    };
    let (number, unit) = text
        .find(|c: char| !c.is_ascii_digit())
        .map_or((text, ""), |at| text.split_at(at));
    let value: u64 = number.parse().map_err(|_| invalid())?;
    let seconds = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return Err(invalid()),
    };
    if value == 0 {
        return Err(invalid());
    }
    Ok(Duration::from_secs(value.saturating_mul(seconds)))
}

pub async fn create(
    tokens: &TokenService,
    scopes: &[String],
    ttl: Option<&str>,
    name: Option<String>,
    quiet: bool,
) -> Result<(), Error> {
    let scopes = Scopes::parse_list(&scopes.join(" ")).map_err(|e| Error::Config(format!("--scope: {e}")))?;
    let ttl = ttl.map(parse_ttl).transpose()?;
    let issued = tokens.create(NewToken { name, scopes, ttl }).await?;
    tracing::info!(target: "security_audit", action = "token_created", caller = "command line", target = %issued.token.name, "security audit");
    if !quiet {
        println!(
            "created token {} (id {}) with {}, {}",
            issued.token.name,
            issued.token.id,
            issued.token.scopes.to_claim(),
            expiry(&issued.token)
        );
        println!("it is shown once; keep it secret:");
    }
    println!("{}", issued.bearer);
    Ok(())
}

pub async fn list(tokens: &TokenService) -> Result<(), Error> {
    let now = model::clock::now_ms();
    println!(
        "{:<24} {:<16} {:<10} {:<26} {:<20} SCOPES",
        "NAME", "ID", "STATE", "EXPIRES", "LAST USED"
    );
    for token in tokens.list().await? {
        let state = if token.revoked_at_ms.is_some() {
            "revoked"
        } else if token.is_expired(now) {
            "expired"
        } else {
            "active"
        };
        println!(
            "{:<24} {:<16} {:<10} {:<26} {:<20} {}",
            token.name,
            token.id,
            state,
            token.expires_at_ms.map_or_else(|| "never".to_owned(), time),
            token.last_used_at_ms.map_or_else(|| "never".to_owned(), minute),
            token.scopes.to_claim()
        );
    }
    Ok(())
}

pub async fn revoke(tokens: &TokenService, name_or_id: &str) -> Result<(), Error> {
    let token = tokens.revoke(name_or_id).await?;
    tracing::info!(target: "security_audit", action = "token_revoked", caller = "command line", target = %token.name, "security audit");
    println!("revoked token {} (id {})", token.name, token.id);
    Ok(())
}

/// On a data directory where no token was ever made, makes an `admin` token and writes it to
/// `admin.token` (readable by its owner only); returns the file's path.
pub async fn write_first_admin(tokens: &TokenService, data_dir: &Path) -> Result<Option<PathBuf>, Error> {
    let Some(issued) = tokens.first_admin().await? else {
        return Ok(None);
    };
    let path = data_dir.join(ADMIN_TOKEN_FILE);
    let partial = data_dir.join(format!("{ADMIN_TOKEN_FILE}.partial"));
    let write = || -> std::io::Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        let _ = std::fs::remove_file(&partial);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&partial)?;
        writeln!(file, "{}", issued.bearer)?;
        file.sync_all()?;
        std::fs::rename(&partial, &path)
    };
    write().map_err(|e| Error::io(format!("cannot write {}", path.display()), e))?;
    Ok(Some(path))
}

fn expiry(token: &StoredToken) -> String {
    token
        .expires_at_ms
        .map_or_else(|| "no expiry".to_owned(), |at| format!("expires {}", time(at)))
}

/// A time in UTC, to the second: `2026-12-04 22:49:54Z`.
fn time(ms: i64) -> String {
    let seconds = ms.div_euclid(1000);
    let (days, rest) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// A time to the minute (last uses are written once a minute).
fn minute(ms: i64) -> String {
    let mut text = time(ms);
    text.replace_range(16..19, "");
    text
}

/// Days since 1970-01-01 as a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_take_a_unit_and_refuse_nonsense() {
        assert_eq!(parse_ttl("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_ttl("15m").unwrap(), Duration::from_secs(900));
        assert_eq!(parse_ttl("30d").unwrap(), Duration::from_secs(30 * 86_400));
        assert_eq!(parse_ttl("2w").unwrap(), Duration::from_secs(14 * 86_400));
        for bad in ["", "0", "m", "10y", "-5s", "1.5h"] {
            assert!(parse_ttl(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn times_read_as_utc_dates() {
        assert_eq!(time(0), "1970-01-01 00:00:00Z");
        assert_eq!(time(1_796_424_594_000), "2026-12-04 22:49:54Z");
        assert_eq!(minute(1_796_424_594_000), "2026-12-04 22:49Z");
        assert_eq!(time(951_782_400_000), "2000-02-29 00:00:00Z");
    }
}
