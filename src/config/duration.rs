//! Durations as nginx writes them: `500ms`, `10s`, `5m`, `1h`, `1m30s`; a bare number is seconds.

use std::time::Duration;

/// How durations are written, for error messages.
const FORMS: &str = "write a number and a unit (ms, s, m, h or d) with no space, as \"500ms\", \
                     \"10s\", \"5m\", \"1h\" or \"1m30s\"";

pub fn parse(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err(format!("an empty duration; {FORMS}"));
    }
    if s.contains(char::is_whitespace) {
        let joined: String = s.split_whitespace().collect();
        if parse(&joined).is_ok() {
            return Err(format!(
                "{s:?} has a space in it: write it without spaces, as {joined:?}"
            ));
        }
        return Err(format!("{s:?} is not a duration; {FORMS}"));
    }
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(format!("{s:?} is not a duration; {FORMS}"));
        }
        let n: u64 = rest[..digits]
            .parse()
            .map_err(|_| format!("{s:?}: number too large"))?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let part = match &rest[..unit_len] {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n.saturating_mul(60)),
            "h" => Duration::from_secs(n.saturating_mul(3600)),
            "d" => Duration::from_secs(n.saturating_mul(86400)),
            "" => return Err(format!("{s:?} is not a duration; {FORMS}")),
            u => return Err(format!("{s:?}: unknown unit {u:?}; {FORMS}")),
        };
        total = total.saturating_add(part);
        rest = &rest[unit_len..];
    }
    Ok(total)
}

/// `d` as it would be written in the file (`"1h30m"`, `"500ms"`).
pub fn show(d: Duration) -> String {
    let mut out = String::new();
    let mut secs = d.as_secs();
    for (unit, len) in [("d", 86400), ("h", 3600), ("m", 60), ("s", 1)] {
        if secs >= len {
            out.push_str(&format!("{}{unit}", secs / len));
            secs %= len;
        }
    }
    let ms = d.subsec_millis();
    if ms > 0 || out.is_empty() {
        out.push_str(&format!("{ms}ms"));
    }
    format!("\"{out}\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse("2h"), Ok(Duration::from_secs(7200)));
        let e = parse("10 s").unwrap_err();
        assert!(e.contains("without spaces, as \"10s\""), "{e}");
        assert!(parse("10 parsecs").unwrap_err().contains("\"10s\""));
        assert!(parse("1.5s").unwrap_err().contains("\"10s\""));
        assert!(parse("s").is_err());
        assert!(parse("5x").is_err());
        assert!(parse("").is_err());
        assert_eq!(show(Duration::from_secs(90)), "\"1m30s\"");
        assert_eq!(show(Duration::from_secs(86400)), "\"1d\"");
        assert_eq!(show(Duration::from_millis(500)), "\"500ms\"");
        assert_eq!(show(Duration::ZERO), "\"0ms\"");
    }
}
