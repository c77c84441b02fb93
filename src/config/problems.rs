//! Checking flag values, collecting every problem rather than stopping at
//! the first.

use std::fmt;
use std::time::Duration;

/// Collects problems while parsing flags.
#[derive(Default)]
pub(super) struct Problems(pub(super) Vec<String>);

/// A setting refused: what is wrong with it is in [`Problems`] already,
/// to be reported with every other problem.
#[derive(Debug)]
pub(super) struct Invalid;

impl Problems {
    pub(super) fn check<T, E: fmt::Display>(
        &mut self,
        flag: &str,
        outcome: Result<T, E>,
    ) -> Option<T> {
        outcome
            .map_err(|e| self.0.push(format!("--{flag}: {e}")))
            .ok()
    }

    /// An optional flag's `value` checked by `check`: `Ok(None)` when it
    /// is not given.
    pub(super) fn optional<T, E: fmt::Display>(
        &mut self,
        flag: &str,
        value: Option<&str>,
        check: impl FnOnce(&str) -> Result<T, E>,
    ) -> Result<Option<T>, Invalid> {
        match value {
            None => Ok(None),
            Some(value) => self.check(flag, check(value)).map(Some).ok_or(Invalid),
        }
    }

    /// A check whose message names what it is about already.
    pub(super) fn check_as_is<T>(&mut self, outcome: Result<T, String>) -> Option<T> {
        outcome.map_err(|e| self.0.push(e)).ok()
    }

    pub(super) fn duration(&mut self, flag: &str, value: &str) -> Option<Duration> {
        let parsed = humantime::parse_duration(value).map_err(|e| format!("{value:?}: {e}"));
        let positive = parsed.and_then(|d| {
            if d.is_zero() {
                Err("must be more than zero".to_owned())
            } else {
                Ok(d)
            }
        });
        self.check(flag, positive)
    }

    pub(super) fn number<T: std::str::FromStr + PartialOrd + fmt::Display>(
        &mut self,
        flag: &str,
        value: &str,
        range: std::ops::RangeInclusive<T>,
    ) -> Option<T> {
        let parsed = value
            .parse::<T>()
            .map_err(|_| format!("{value:?} is not a whole number"))
            .and_then(|n| {
                if range.contains(&n) {
                    Ok(n)
                } else {
                    Err(format!(
                        "{n} is out of range {}..={}",
                        range.start(),
                        range.end()
                    ))
                }
            });
        self.check(flag, parsed)
    }
}

impl Problems {
    pub(super) fn boolean(&mut self, flag: &str, value: &str) -> Option<bool> {
        let parsed = match value {
            "true" | "1" | "yes" | "on" => Ok(true),
            "false" | "0" | "no" | "off" => Ok(false),
            _ => Err(format!("{value:?} is not true or false")),
        };
        self.check(flag, parsed)
    }

    /// A number strictly between 0 and 1.
    pub(super) fn share(&mut self, flag: &str, value: &str) -> Option<f64> {
        let parsed = value
            .parse::<f64>()
            .map_err(|_| format!("{value:?} is not a number"))
            .and_then(|n| {
                if n > 0.0 && n < 1.0 {
                    Ok(n)
                } else {
                    Err(format!("{n} must be between 0 and 1"))
                }
            });
        self.check(flag, parsed)
    }

    pub(super) fn positive(&mut self, flag: &str, value: &str) -> Option<f64> {
        let parsed = value
            .parse::<f64>()
            .map_err(|_| format!("{value:?} is not a number"))
            .and_then(|n| {
                if n > 0.0 && n.is_finite() {
                    Ok(n)
                } else {
                    Err(format!("{n} must be more than zero"))
                }
            });
        self.check(flag, parsed)
    }

    /// Bytes, with an optional KiB, MiB or GiB suffix.
    pub(super) fn bytes(&mut self, flag: &str, value: &str) -> Option<u64> {
        let (digits, unit) = match value.find(|c: char| !c.is_ascii_digit()) {
            Some(at) => value.split_at(at),
            None => (value, ""),
        };
        let multiplier = match unit.trim() {
            "" | "B" => Some(1),
            "KiB" => Some(1 << 10),
            "MiB" => Some(1 << 20),
            "GiB" => Some(1 << 30),
            _ => None,
        };
        let parsed = match (digits.parse::<u64>(), multiplier) {
            (Ok(n), Some(m)) => n
                .checked_mul(m)
                .ok_or_else(|| format!("{value:?} is too large")),
            _ => Err(format!("{value:?} is not a size like 268435456 or 256MiB")),
        };
        self.check(flag, parsed)
    }
}

pub(super) fn check_endpoint(url: &str) -> Result<String, String> {
    let uri: http::Uri = url.parse().map_err(|e| format!("{url:?}: {e}"))?;
    match (uri.scheme_str(), uri.host()) {
        (Some("http" | "https"), Some(host)) if !host.is_empty() => Ok(url.to_owned()),
        _ => Err(format!(
            "{url:?}: must be an http:// or https:// URL with a host"
        )),
    }
}

pub(super) fn check_region(region: &str) -> Result<String, String> {
    let ok = !region.is_empty()
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(region.to_owned())
    } else {
        Err(format!("{region:?}: must look like us-east-1"))
    }
}
