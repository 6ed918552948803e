//! `[listener.tls] ocsp_response`: the staple file, read and checked at load.

use std::sync::Arc;

use super::{file, ConfigError, Cx};
use crate::tls::ocsp::Stapler;

impl Cx<'_> {
    /// `tls.ocsp_response` (named `key` in messages), for the certificate chain `cert_pem`; `pairs`
    /// is the number of certificates served. A file that cannot be read is an error; a
    /// response that cannot be stapled is a warning (the listener runs without a staple until
    /// the file is replaced).
    pub(super) fn ocsp_stapler(
        &self,
        key: &str,
        t: &file::TlsFile,
        cert_pem: &[u8],
        pairs: usize,
    ) -> Result<Option<Arc<Stapler>>, ConfigError> {
        let Some(at) = &t.ocsp_response else {
            return Ok(None);
        };
        if pairs > 1 {
            return Err(self.err(
                Some(at),
                key,
                "is not supported with several certificates (the staple would only cover the \
                 first): serve one certificate, or remove ocsp_response",
            ));
        }
        let path = self.resolve(at.get_ref());
        let stapler = Stapler::load(&path, cert_pem).map_err(|r| self.err(Some(at), key, &r))?;
        if let Some(reason) = stapler.refused() {
            self.warn(key, &format!("{} is NOT stapled: {reason}", path.display()));
        }
        Ok(Some(Arc::new(stapler)))
    }
}
