//! `[listener] protocols` and `[listener.http2]`: which protocols a listener speaks (offered in
//! ALPN on TLS, detected by the prior-knowledge preface on plain TCP) and the HTTP/2 limits,
//! with nginx's defaults where nginx has one.

use serde::Deserialize;
use toml::Spanned;

use super::{ConfigError, Cx};

/// `[listener.http2]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Http2File {
    /// Streams a client may have open at once (nginx `http2_max_concurrent_streams`).
    pub max_concurrent_streams: Option<Spanned<i64>>,
    /// Largest decoded header list of one request, in bytes (RFC 9113 SETTINGS_MAX_HEADER_LIST_SIZE).
    pub max_header_list_size: Option<Spanned<i64>>,
    /// Flow-control window of each stream, in bytes: what a client may send ahead unread.
    pub initial_stream_window_size: Option<Spanned<i64>>,
    /// Flow-control window of the whole connection, in bytes.
    pub initial_connection_window_size: Option<Spanned<i64>>,
    /// Largest frame payload certgate accepts, in bytes.
    pub max_frame_size: Option<Spanned<i64>>,
}

/// Which protocols a listener speaks, in its order of preference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Protocols {
    /// HTTP/2 (`h2`).
    pub h2: bool,
    /// HTTP/1.1 (`http/1.1`, which covers HTTP/1.0).
    pub http1: bool,
    /// `h2` listed before `http/1.1`: preferred in ALPN.
    pub h2_first: bool,
}

impl Default for Protocols {
    fn default() -> Self {
        Self {
            h2: true,
            http1: true,
            h2_first: true,
        }
    }
}

impl Protocols {
    /// The ALPN protocol list in wire format (length-prefixed names), in preference order.
    pub fn alpn(&self) -> &'static [u8] {
        match (self.h2, self.http1, self.h2_first) {
            (true, true, true) => b"\x02h2\x08http/1.1",
            (true, true, false) => b"\x08http/1.1\x02h2",
            (true, false, _) => b"\x02h2",
            (false, _, _) => b"\x08http/1.1",
        }
    }
}

/// The HTTP/2 limits of a listener, validated.
#[derive(Debug, Clone, Copy)]
pub struct Http2 {
    /// SETTINGS_MAX_CONCURRENT_STREAMS.
    pub max_concurrent_streams: u32,
    /// SETTINGS_MAX_HEADER_LIST_SIZE.
    pub max_header_list_size: u32,
    /// SETTINGS_INITIAL_WINDOW_SIZE.
    pub initial_stream_window_size: u32,
    /// The connection's receive window (a WINDOW_UPDATE on stream 0 after the preface).
    pub initial_connection_window_size: u32,
    /// SETTINGS_MAX_FRAME_SIZE.
    pub max_frame_size: u32,
}

/// nginx's `http2_max_concurrent_streams` default.
pub const DEFAULT_MAX_CONCURRENT_STREAMS: u32 = 128;
/// The HTTP/2 default initial window (RFC 9113 §6.5.2), as nginx advertises for a stream.
pub const DEFAULT_STREAM_WINDOW: u32 = 65_535;
/// A connection window of 1 MiB: sixteen streams' worth of the default stream window.
pub const DEFAULT_CONNECTION_WINDOW: u32 = 1 << 20;
/// The smallest frame size HTTP/2 allows, and its default.
pub const DEFAULT_MAX_FRAME_SIZE: u32 = 16_384;
/// The largest window HTTP/2 can express.
const MAX_WINDOW: i64 = (1 << 31) - 1;

impl Cx<'_> {
    /// `protocols` of `listener[i]`: a non-empty list of `h2` and `http/1.1`, each at most once.
    pub(super) fn protocols(
        &self,
        i: usize,
        list: Option<&Spanned<Vec<Spanned<String>>>>,
    ) -> Result<Protocols, ConfigError> {
        let key = format!("listener[{i}].protocols");
        let Some(list) = list else {
            return Ok(Protocols::default());
        };
        if list.get_ref().is_empty() {
            return Err(self.err(
                Some(list),
                &key,
                "must name at least one protocol: \"h2\", \"http/1.1\" (the default is both)",
            ));
        }
        let mut p = Protocols {
            h2: false,
            http1: false,
            h2_first: false,
        };
        for name in list.get_ref() {
            let seen = match name.get_ref().as_str() {
                "h2" => {
                    p.h2_first = !p.http1;
                    std::mem::replace(&mut p.h2, true)
                }
                "http/1.1" => std::mem::replace(&mut p.http1, true),
                other => {
                    let hint = match other.to_ascii_lowercase().as_str() {
                        "http2" | "http/2" | "h2c" => " (HTTP/2 is \"h2\", on TLS and plain alike)",
                        "http1" | "http/1" | "http/1.0" | "http1.1" => {
                            " (HTTP/1.x is \"http/1.1\")"
                        }
                        _ => "",
                    };
                    return Err(self.err(
                        Some(name),
                        &key,
                        &format!(
                            "unknown protocol {other:?}{hint}: write \"h2\" and/or \"http/1.1\""
                        ),
                    ));
                }
            };
            if seen {
                return Err(self.err(
                    Some(name),
                    &key,
                    &format!("{:?} is listed twice", name.get_ref()),
                ));
            }
        }
        Ok(p)
    }

    /// `[listener.http2]` of `listener[i]`; the header list defaults to `max_header_bytes`.
    pub(super) fn http2(
        &self,
        i: usize,
        h: &Http2File,
        max_header_bytes: usize,
    ) -> Result<Http2, ConfigError> {
        let value = |at: &Option<Spanned<i64>>,
                     k: &str,
                     default: u32,
                     min: i64,
                     max: i64,
                     what: &str|
         -> Result<u32, ConfigError> {
            let Some(v) = at else {
                return Ok(default);
            };
            let n = *v.get_ref();
            if !(min..=max).contains(&n) {
                return Err(self.err(
                    Some(v),
                    &format!("listener[{i}].http2.{k}"),
                    &format!("{n} is not from {min} to {max} ({what}; the default is {default})"),
                ));
            }
            Ok(u32::try_from(n).unwrap_or(default))
        };
        let header_default = u32::try_from(max_header_bytes).unwrap_or(u32::MAX);
        Ok(Http2 {
            max_concurrent_streams: value(
                &h.max_concurrent_streams,
                "max_concurrent_streams",
                DEFAULT_MAX_CONCURRENT_STREAMS,
                1,
                1 << 16,
                "streams open at once on one connection",
            )?,
            max_header_list_size: value(
                &h.max_header_list_size,
                "max_header_list_size",
                header_default,
                1024,
                1 << 20,
                "bytes of decoded request headers; by default limits.max_header_bytes",
            )?,
            initial_stream_window_size: value(
                &h.initial_stream_window_size,
                "initial_stream_window_size",
                DEFAULT_STREAM_WINDOW,
                1024,
                MAX_WINDOW,
                "bytes a client may send ahead on one stream",
            )?,
            initial_connection_window_size: value(
                &h.initial_connection_window_size,
                "initial_connection_window_size",
                DEFAULT_CONNECTION_WINDOW,
                i64::from(DEFAULT_STREAM_WINDOW),
                MAX_WINDOW,
                "bytes a client may send ahead on the whole connection",
            )?,
            max_frame_size: value(
                &h.max_frame_size,
                "max_frame_size",
                DEFAULT_MAX_FRAME_SIZE,
                16_384,
                16_777_215,
                "bytes of one frame's payload, as HTTP/2 allows",
            )?,
        })
    }
}
