//! Durations written the way Kubernetes and Gateway API users write them:
//! `30s`, `250ms`, `1m30s`, `1h`. Parsed once when the object is read; written
//! back in canonical form (largest units first).

use std::{borrow::Cow, fmt, str::FromStr};

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The schema pattern; parsing below accepts exactly this language.
pub const DURATION_PATTERN: &str = r"^([0-9]{1,5}(h|m|s|ms)){1,4}$";

/// A non-negative duration such as `30s` or `1m30s`; units h, m, s, ms.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration(std::time::Duration);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {0:?}: expected a sequence of <number><unit> with units h, m, s or ms, e.g. \"30s\" or \"1m30s\"")]
pub struct DurationError(String);

impl Duration {
    pub const fn from_std(d: std::time::Duration) -> Self {
        Self(d)
    }
    pub const fn as_std(&self) -> std::time::Duration {
        self.0
    }
}

impl From<Duration> for std::time::Duration {
    fn from(d: Duration) -> Self {
        d.0
    }
}

impl FromStr for Duration {
    type Err = DurationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || DurationError(s.to_owned());
        if s.is_empty() {
            return Err(err());
        }
        let mut total = std::time::Duration::ZERO;
        let mut rest = s;
        let mut parts = 0;
        while !rest.is_empty() {
            let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(err)?;
            if digits == 0 || digits > 5 {
                return Err(err());
            }
            let n: u64 = rest[..digits].parse().map_err(|_| err())?;
            rest = &rest[digits..];
            let (unit, len) = if rest.starts_with("ms") {
                (std::time::Duration::from_millis(1), 2)
            } else if rest.starts_with('h') {
                (std::time::Duration::from_secs(3600), 1)
            } else if rest.starts_with('m') {
                (std::time::Duration::from_secs(60), 1)
            } else if rest.starts_with('s') {
                (std::time::Duration::from_secs(1), 1)
            } else {
                return Err(err());
            };
            rest = &rest[len..];
            total += unit * u32::try_from(n).map_err(|_| err())?;
            parts += 1;
        }
        if parts > 4 {
            return Err(err());
        }
        Ok(Self(total))
    }
}

impl fmt::Display for Duration {
    /// Canonical form: the largest units first, zero parts left out.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        if ms == 0 {
            return f.write_str("0s");
        }
        let (h, m, s, ms) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000);
        for (v, unit) in [(h, "h"), (m, "m"), (s, "s"), (ms, "ms")] {
            if v > 0 {
                write!(f, "{v}{unit}")?;
            }
        }
        Ok(())
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Cow::<str>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for Duration {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }
    fn inline_schema() -> bool {
        true
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": DURATION_PATTERN,
            "maxLength": 32,
            "description": "A duration such as 30s, 250ms or 1m30s (units h, m, s, ms)."
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration as Std;

    #[test]
    fn parses_the_forms_users_write() {
        for (text, want) in [
            ("30s", Std::from_secs(30)),
            ("250ms", Std::from_millis(250)),
            ("1m30s", Std::from_secs(90)),
            ("1h", Std::from_secs(3600)),
            ("0s", Std::ZERO),
            ("1h2m3s4ms", Std::from_millis(3_723_004)),
        ] {
            assert_eq!(text.parse::<Duration>().unwrap().as_std(), want, "{text}");
        }
    }

    #[test]
    fn rejects_what_the_schema_pattern_rejects() {
        for bad in ["", "30", "s", "1.5s", "-1s", "30 s", "1d", "123456s", "1s1s1s1s1s"] {
            assert!(bad.parse::<Duration>().is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn displays_canonically() {
        assert_eq!(Duration::from_std(Std::from_millis(90_250)).to_string(), "1m30s250ms");
        assert_eq!(Duration::from_std(Std::ZERO).to_string(), "0s");
    }
}
