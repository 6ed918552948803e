//! The configuration's TOML tree with the source span of every key and value, so that an error
//! found anywhere (by serde or by validation) can name its line and its dotted key path with
//! array indices (`listener[0].timeouts.handshake`), and so that misspelt sections are reported
//! as such before serde sees them.

use std::ops::Range;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

/// Top-level sections and whether each is an array of tables (`[[listener]]`).
const SECTIONS: [(&str, bool); 5] = [
    ("runtime", false),
    ("log", false),
    ("admin", false),
    ("listener", true),
    ("upstream", true),
];

/// The parsed document.
pub(super) struct Tree<'a> {
    root: Spanned<DeTable<'a>>,
}

/// A structural mistake in the document: where, which key, why.
pub(super) struct Misplaced {
    pub span: Range<usize>,
    pub key: String,
    pub reason: String,
}

impl<'a> Tree<'a> {
    pub fn parse(text: &'a str) -> Result<Self, toml::de::Error> {
        DeTable::parse(text).map(|root| Tree { root })
    }

    /// Unknown top-level sections (with the nearest known name) and `[listener.x]` tables that
    /// belong to no `[[listener]]`.
    pub fn check_sections(&self) -> Result<(), Misplaced> {
        let names: Vec<&str> = SECTIONS.iter().map(|(n, _)| *n).collect();
        for (k, _) in self.root.get_ref().iter() {
            let name = k.get_ref().as_ref();
            if names.contains(&name) {
                continue;
            }
            let reason = match closest(name, &names) {
                Some(near) => format!("unknown section `{name}`, did you mean `{near}`?"),
                None => format!(
                    "unknown section or key `{name}` (the sections are [runtime], [log], \
                     [admin], [[listener]] and [[upstream]])"
                ),
            };
            return Err(Misplaced {
                span: k.span(),
                key: name.to_owned(),
                reason,
            });
        }
        for (k, v) in self.root.get_ref().iter() {
            let name = k.get_ref().as_ref();
            let array = SECTIONS.iter().any(|(n, a)| *n == name && *a);
            if array && v.get_ref().is_table() {
                return Err(Misplaced {
                    span: k.span(),
                    key: name.to_owned(),
                    reason: format!(
                        "this table belongs to no [[{name}]]: start each {name} with \
                         `[[{name}]]` (two brackets) before its [{name}.*] tables"
                    ),
                });
            }
        }
        Ok(())
    }

    /// The dotted key path (`listener[0].tls.certificate`) of the innermost key or value whose
    /// source covers `offset`; None when nothing does.
    pub fn path_at(&self, offset: usize) -> Option<String> {
        let mut best: Option<(usize, String)> = None;
        visit_table(self.root.get_ref(), "", &mut |path, span| {
            if span.start <= offset && offset < span.end.max(span.start + 1) {
                let len = span.end - span.start;
                if best.as_ref().is_none_or(|(l, _)| len <= *l) {
                    best = Some((len, path.to_owned()));
                }
            }
        });
        best.map(|(_, p)| p)
    }

    /// Where `path` (as [`Tree::path_at`] writes it) is written: its key, or, when the key is
    /// absent (a default applies), the nearest enclosing table or array element that is.
    pub fn span_of(&self, path: &str) -> Option<Range<usize>> {
        let mut found = None;
        let mut best = 0;
        visit_table(self.root.get_ref(), "", &mut |p, span| {
            let covers = path == p
                || path
                    .strip_prefix(p)
                    .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['));
            if covers && (found.is_none() || p.len() > best) {
                best = p.len();
                found = Some(span);
            }
        });
        found
    }
}

/// Calls `f` for every key (with its span) and every array element (with the element's span).
/// For keys, the key's own span is used: a table's value span is only its header.
fn visit_table(t: &DeTable<'_>, prefix: &str, f: &mut dyn FnMut(&str, Range<usize>)) {
    for (k, v) in t.iter() {
        let path = if prefix.is_empty() {
            k.get_ref().to_string()
        } else {
            format!("{prefix}.{}", k.get_ref())
        };
        f(&path, k.span());
        visit_value(v, &path, f);
    }
}

fn visit_value(v: &Spanned<DeValue<'_>>, path: &str, f: &mut dyn FnMut(&str, Range<usize>)) {
    match v.get_ref() {
        DeValue::Table(t) => visit_table(t, path, f),
        DeValue::Array(a) => {
            for (i, e) in a.iter().enumerate() {
                let p = format!("{path}[{i}]");
                f(&p, e.span());
                visit_value(e, &p, f);
            }
        }
        _ => f(path, v.span()),
    }
}

/// The candidate nearest to `word` when it is a plausible misspelling (edit distance at most a
/// third of the word, at least 1; or one is a prefix of the other).
pub(super) fn closest<'c>(word: &str, candidates: &[&'c str]) -> Option<&'c str> {
    let word_l = word.to_ascii_lowercase();
    let limit = (word.len() / 3).max(1);
    candidates
        .iter()
        .map(|c| (edit_distance(&word_l, &c.to_ascii_lowercase()), *c))
        .filter(|(d, c)| {
            *d <= limit || (word.len() >= 3 && (c.starts_with(word) || word.starts_with(c)))
        })
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let subst = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = subst.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Rewrites serde's messages into what a person reads: unknown keys and values with the
/// nearest valid spelling, the valid ones listed without backticks.
pub(super) fn humanize(message: &str) -> String {
    let message = message.trim();
    for (prefix, what) in [("unknown field `", "key"), ("unknown variant `", "value")] {
        let Some(rest) = message.strip_prefix(prefix) else {
            continue;
        };
        let Some((word, expected)) = rest.split_once('`') else {
            continue;
        };
        let valid: Vec<&str> = expected
            .split('`')
            .skip(1)
            .step_by(2)
            .filter(|s| !s.is_empty())
            .collect();
        let list = valid.join(", ");
        let shown = if what == "value" {
            format!("\"{word}\"")
        } else {
            format!("`{word}`")
        };
        return match closest(word, &valid) {
            Some(near) if what == "key" => {
                format!("unknown {what} {shown}, did you mean `{near}`? (valid: {list})")
            }
            Some(near) => {
                format!("unknown {what} {shown}, did you mean \"{near}\"? (valid: {list})")
            }
            None if valid.is_empty() => format!("unknown {what} {shown}"),
            None => format!("unknown {what} {shown} (valid: {list})"),
        };
    }
    if let Some(rest) = message.strip_prefix("missing field `") {
        let field = rest.split('`').next().unwrap_or(rest);
        return format!("the required key `{field}` is missing");
    }
    message.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_have_array_indices() {
        let text = "[log]\nlevel = \"x\"\n[[listener]]\nname = \"a\"\n[[listener]]\nname = \"b\"\n\
                    [listener.timeouts]\nhandshake = \"1s\"\n";
        let t = Tree::parse(text).unwrap();
        let at = |s: &str| text.find(s).unwrap();
        assert_eq!(t.path_at(at("\"b\"")).as_deref(), Some("listener[1].name"));
        assert_eq!(
            t.path_at(at("handshake")).as_deref(),
            Some("listener[1].timeouts.handshake")
        );
        assert_eq!(t.path_at(at("level")).as_deref(), Some("log.level"));
        let span = t.span_of("listener[1].timeouts.handshake").unwrap();
        assert_eq!(&text[span], "handshake");
        // Absent keys point at the table that would hold them.
        let span = t.span_of("listener[1].timeouts.body_idle").unwrap();
        assert_eq!(&text[span], "timeouts");
        let span = t.span_of("listener[0].limits.max_header_bytes").unwrap();
        assert_eq!(&text[span], "[[listener]]");
    }

    #[test]
    fn misspelt_sections() {
        let t = Tree::parse("[[listner]]\nname = \"a\"\n[listener.tls]\n").unwrap();
        let e = t.check_sections().err().unwrap();
        assert_eq!(e.key, "listner");
        assert!(e.reason.contains("did you mean `listener`"), "{}", e.reason);
        let t = Tree::parse("[runtime]\n[listener.tls]\n").unwrap();
        let e = t.check_sections().err().unwrap();
        assert!(e.reason.contains("[[listener]]"), "{}", e.reason);
    }

    #[test]
    fn suggestions() {
        assert_eq!(closest("timeout", &["name", "timeouts"]), Some("timeouts"));
        assert_eq!(closest("listner", &["listener", "log"]), Some("listener"));
        assert_eq!(closest("zzz", &["listener", "log"]), None);
        let m = humanize("unknown field `timeout`, expected one of `name`, `timeouts`");
        assert_eq!(
            m,
            "unknown key `timeout`, did you mean `timeouts`? (valid: name, timeouts)"
        );
        let m = humanize("unknown variant `io-uring`, expected one of `auto`, `io_uring`");
        assert!(m.contains("did you mean \"io_uring\""), "{m}");
    }
}
