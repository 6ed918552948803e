//! Session-ticket keys: one set per listener, shared by every worker (the `SslContext` is shared),
//! rotated on a schedule, or loaded from files in nginx's `ssl_session_ticket_key` format so
//! several hosts behind one balancer resume each other's sessions.
//!
//! The first key encrypts new tickets; every key still held decrypts. A ticket made under an
//! older key is accepted and renewed under the current one.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use boring::hash::MessageDigest;
use boring::rand::rand_bytes;
use boring::ssl::{SslContextBuilder, TicketKeyCallbackResult};
use boring::symm::Cipher;

/// Keys held after a rotation: the current one and the previous two, so a ticket stays valid for
/// at least two rotation periods.
pub const KEYS_KEPT: usize = 3;

/// One key, as nginx lays out its files: 48 bytes = name, AES-128 key, HMAC key (16 each);
/// 80 bytes = name, HMAC key (32), AES-256 key (32). The HMAC is SHA-256 in both.
#[derive(Clone)]
pub struct TicketKey {
    name: [u8; 16],
    aes: Vec<u8>,
    hmac: Vec<u8>,
}

impl TicketKey {
    /// Parses a key file's bytes (48 or 80 of them).
    pub fn from_nginx_bytes(buf: &[u8]) -> Result<Self, String> {
        let mut name = [0u8; 16];
        match buf.len() {
            48 => {
                name.copy_from_slice(&buf[..16]);
                Ok(Self {
                    name,
                    aes: buf[16..32].to_vec(),
                    hmac: buf[32..48].to_vec(),
                })
            }
            80 => {
                name.copy_from_slice(&buf[..16]);
                Ok(Self {
                    name,
                    hmac: buf[16..48].to_vec(),
                    aes: buf[48..80].to_vec(),
                })
            }
            n => Err(format!("a ticket key file holds 48 or 80 bytes, not {n}")),
        }
    }

    /// A fresh random key (the 80-byte kind: AES-256).
    pub fn generate() -> Self {
        let mut buf = [0u8; 80];
        // BoringSSL's RNG does not fail once initialised; a zero key would only be weak.
        let _ = rand_bytes(&mut buf);
        Self::from_nginx_bytes(&buf).unwrap_or_else(|_| unreachable!("80 bytes"))
    }

    fn cipher(&self) -> Cipher {
        if self.aes.len() == 16 {
            Cipher::aes_128_cbc()
        } else {
            Cipher::aes_256_cbc()
        }
    }
}

/// A listener's ticket keys.
pub struct TicketKeys {
    keys: ArcSwap<Vec<TicketKey>>,
    /// None: keys from files, never rotated.
    rotation: Option<Duration>,
}

impl TicketKeys {
    /// Random keys rotated every `every`.
    pub fn rotating(every: Duration) -> Arc<Self> {
        Arc::new(Self {
            keys: ArcSwap::from_pointee(vec![TicketKey::generate()]),
            rotation: Some(every),
        })
    }

    /// Keys from files; the first encrypts.
    pub fn fixed(keys: Vec<TicketKey>) -> Arc<Self> {
        Arc::new(Self {
            keys: ArcSwap::from_pointee(keys),
            rotation: None,
        })
    }

    /// How often random keys are replaced; `None` for keys loaded from files, which never rotate.
    pub fn rotation(&self) -> Option<Duration> {
        self.rotation
    }

    /// Puts a new key in front and drops the oldest beyond `KEYS_KEPT`.
    pub fn rotate(&self) {
        let mut next = Vec::with_capacity(KEYS_KEPT);
        next.push(TicketKey::generate());
        next.extend(self.keys.load().iter().take(KEYS_KEPT - 1).cloned());
        self.keys.store(Arc::new(next));
        crate::metrics::ticket_key_rotated();
    }

    /// Names of the keys held, newest first (for tests and logs).
    pub fn names(&self) -> Vec<[u8; 16]> {
        self.keys.load().iter().map(|k| k.name).collect()
    }

    /// Makes `b` seal and open tickets with these keys.
    pub fn install(self: &Arc<Self>, b: &mut SslContextBuilder) {
        let this = self.clone();
        let callback = move |_: &boring::ssl::SslRef,
                             name: &mut [u8; 16],
                             iv: &mut [u8; 16],
                             cipher: &mut boring::symm::CipherCtxRef,
                             hmac: &mut boring::hmac::HmacCtxRef,
                             encrypt: bool| {
            let keys = this.keys.load();
            if encrypt {
                let Some(key) = keys.first() else {
                    return TicketKeyCallbackResult::Noop;
                };
                if rand_bytes(iv).is_err() {
                    return TicketKeyCallbackResult::Error;
                }
                *name = key.name;
                if cipher.init_encrypt(&key.cipher(), &key.aes, iv).is_err()
                    || hmac.init(&key.hmac, &MessageDigest::sha256()).is_err()
                {
                    return TicketKeyCallbackResult::Error;
                }
                return TicketKeyCallbackResult::Success;
            }
            let Some((index, key)) = keys.iter().enumerate().find(|(_, k)| k.name == *name) else {
                // Unknown or retired key: a full handshake, not an error.
                return TicketKeyCallbackResult::Noop;
            };
            if cipher.init_decrypt(&key.cipher(), &key.aes, iv).is_err()
                || hmac.init(&key.hmac, &MessageDigest::sha256()).is_err()
            {
                return TicketKeyCallbackResult::Error;
            }
            if index == 0 {
                TicketKeyCallbackResult::Success
            } else {
                TicketKeyCallbackResult::DecryptSuccessRenew
            }
        };
        // SAFETY: the callback sets the key name, IV, cipher and HMAC contexts as
        // SSL_CTX_set_tlsext_ticket_key_cb requires, for both directions.
        unsafe { b.set_ticket_key_callback(callback) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nginx_layouts() {
        let buf48: Vec<u8> = (0..48).collect();
        let k = TicketKey::from_nginx_bytes(&buf48).unwrap();
        assert_eq!(k.name[0], 0);
        assert_eq!(k.aes, (16..32).collect::<Vec<u8>>());
        assert_eq!(k.hmac, (32..48).collect::<Vec<u8>>());
        assert_eq!(k.cipher().key_len(), 16);
        let buf80: Vec<u8> = (0..80).collect();
        let k = TicketKey::from_nginx_bytes(&buf80).unwrap();
        assert_eq!(k.hmac, (16..48).collect::<Vec<u8>>());
        assert_eq!(k.aes, (48..80).collect::<Vec<u8>>());
        assert_eq!(k.cipher().key_len(), 32);
        assert!(TicketKey::from_nginx_bytes(&[0u8; 47]).is_err());
    }

    #[test]
    fn rotation_keeps_the_previous_two() {
        let keys = TicketKeys::rotating(Duration::from_secs(3600));
        let first = keys.names()[0];
        keys.rotate();
        keys.rotate();
        assert_eq!(keys.names().len(), 3);
        assert_eq!(keys.names()[2], first);
        keys.rotate();
        assert_eq!(keys.names().len(), 3);
        assert!(!keys.names().contains(&first));
    }
}
