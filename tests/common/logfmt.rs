//! Reading certgate's logfmt lines as a logfmt reader splits them, so tests check fields, not
//! substrings a forged value could fake.

/// The fields of a logfmt line, in order: `key=value` pairs, with quoted values unescaped (JSON
/// escapes: `\"`, `\\`, `\n`, `\r`, `\t`, `\uXXXX`); a bare word is a key without a value.
pub fn logfmt(line: &str) -> Vec<(String, Option<String>)> {
    let mut out = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.peek() == Some(&' ') {
            chars.next();
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == ' ' || c == '=' {
                break;
            }
            key.push(c);
            chars.next();
        }
        if key.is_empty() && chars.peek().is_none() {
            return out;
        }
        if chars.peek() != Some(&'=') {
            out.push((key, None));
            continue;
        }
        chars.next();
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '"' => break,
                    '\\' => match chars.next() {
                        Some('n') => value.push('\n'),
                        Some('r') => value.push('\r'),
                        Some('t') => value.push('\t'),
                        Some('u') => {
                            let hex: String = chars.by_ref().take(4).collect();
                            let code = u32::from_str_radix(&hex, 16).expect("\\u escape");
                            value.push(char::from_u32(code).expect("code point"));
                        }
                        Some(c) => value.push(c),
                        None => panic!("dangling backslash in {line:?}"),
                    },
                    c => value.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ' ' {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        out.push((key, Some(value)));
    }
}

/// The values of `key` in a parsed line (bare words named `key` have none).
pub fn values<'a>(fields: &'a [(String, Option<String>)], key: &str) -> Vec<&'a str> {
    fields
        .iter()
        .filter(|(k, _)| k == key)
        .filter_map(|(_, v)| v.as_deref())
        .collect()
}

/// `key` appears in the line, with a value or as a bare word.
pub fn has_key(fields: &[(String, Option<String>)], key: &str) -> bool {
    fields.iter().any(|(k, _)| k == key)
}
