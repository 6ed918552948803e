//! Stands in for `boring` and `boring-sys` when the fuzz crate compiles certgate's pure source
//! files (DN and rule parsing, the configuration loader) without linking BoringSSL, whose build
//! alone would take most of CI's time.
//!
//! Only what those files *name* is here. Every certificate type is an empty enum: no value of it
//! can exist, so the code that reads certificates compiles but can never run in a fuzz target,
//! and nothing here needs a real body. The few raw functions return their documented failure
//! value. When certgate starts naming another boring item in those files, the fuzz build fails
//! with "cannot find ... in ..." and the item is added here the same way.
//!
//! The fuzz crate imports this crate twice: `extern crate ... as boring` and `... as boring_sys`.

#![allow(
    non_camel_case_types,
    non_snake_case,
    non_upper_case_globals,
    clippy::missing_safety_doc
)]

use std::os::raw::{c_char, c_int, c_void};

/// `boring::asn1`.
pub mod asn1 {
    use std::fmt;

    use crate::bn::BigNum;
    use crate::error::ErrorStack;
    use crate::nid::Nid;

    pub enum Asn1ObjectRef {}
    impl Asn1ObjectRef {
        pub fn nid(&self) -> Nid {
            match *self {}
        }
    }
    impl fmt::Display for Asn1ObjectRef {
        fn fmt(&self, _: &mut fmt::Formatter<'_>) -> fmt::Result {
            match *self {}
        }
    }

    pub enum Asn1StringRef {}
    impl Asn1StringRef {
        pub fn as_slice(&self) -> &[u8] {
            match *self {}
        }
    }

    pub enum Asn1TimeRef {}
    impl fmt::Display for Asn1TimeRef {
        fn fmt(&self, _: &mut fmt::Formatter<'_>) -> fmt::Result {
            match *self {}
        }
    }

    pub enum Asn1IntegerRef {}
    impl Asn1IntegerRef {
        pub fn to_bn(&self) -> Result<BigNum, ErrorStack> {
            match *self {}
        }
    }
}

/// `boring::bn`.
pub mod bn {
    pub enum BigNum {}
    impl BigNum {
        pub fn to_vec(&self) -> Vec<u8> {
            match *self {}
        }
        pub fn is_negative(&self) -> bool {
            match *self {}
        }
    }
}

/// `boring::error`.
pub mod error {
    /// Every parse in the shim fails with this (it has no BoringSSL to parse with).
    #[derive(Debug)]
    pub struct ErrorStack(());

    impl ErrorStack {
        pub fn shim() -> ErrorStack {
            ErrorStack(())
        }
    }

    impl std::fmt::Display for ErrorStack {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("no BoringSSL in the fuzz build")
        }
    }
}

/// `boring::pkey`.
pub mod pkey {
    use std::marker::PhantomData;

    use crate::error::ErrorStack;

    pub enum Private {}
    pub enum Public {}
    enum Never {}

    pub struct PKey<T>(Never, PhantomData<T>);
    impl<T> PKey<T> {
        pub fn public_eq<U>(&self, _: &PKey<U>) -> bool {
            match self.0 {}
        }
    }
    impl PKey<Private> {
        /// Fails: the fuzz build reads no key.
        pub fn private_key_from_pem_callback<F>(_: &[u8], _: F) -> Result<PKey<Private>, ErrorStack>
        where
            F: FnOnce(&mut [u8]) -> Result<usize, ErrorStack>,
        {
            Err(ErrorStack::shim())
        }
    }
}

/// `boring::nid`.
pub mod nid {
    use std::os::raw::c_int;

    pub enum Nid {}
    impl Nid {
        pub fn as_raw(&self) -> c_int {
            match *self {}
        }
    }
}

/// `boring::hash`.
pub mod hash {
    pub struct MessageDigest(());
    impl MessageDigest {
        pub fn sha256() -> MessageDigest {
            MessageDigest(())
        }
    }

    pub enum DigestBytes {}
    impl std::ops::Deref for DigestBytes {
        type Target = [u8];
        fn deref(&self) -> &[u8] {
            match *self {}
        }
    }
}

/// `boring::ssl`.
pub mod ssl {
    /// A built TLS context. The fuzz crate's `tls` stand-in never builds one.
    pub enum SslContext {}

    /// What a context dereferences to.
    pub enum SslContextRef {}

    impl std::ops::Deref for SslContext {
        type Target = SslContextRef;

        fn deref(&self) -> &SslContextRef {
            match *self {}
        }
    }

    impl Clone for SslContext {
        fn clone(&self) -> Self {
            match *self {}
        }
    }
}

/// `boring::x509`.
pub mod x509 {
    use std::borrow::Borrow;
    use std::ops::Deref;

    use crate::asn1::{Asn1IntegerRef, Asn1ObjectRef, Asn1StringRef, Asn1TimeRef};
    use crate::error::ErrorStack;
    use crate::hash::{DigestBytes, MessageDigest};
    use crate::pkey::{PKey, Public};

    pub enum X509 {}
    impl X509 {
        /// Fails: the fuzz build reads no certificate.
        pub fn stack_from_pem(_: &[u8]) -> Result<Vec<X509>, ErrorStack> {
            Err(ErrorStack::shim())
        }
    }
    impl Clone for X509 {
        fn clone(&self) -> X509 {
            match *self {}
        }
    }
    impl Deref for X509 {
        type Target = X509Ref;
        fn deref(&self) -> &X509Ref {
            match *self {}
        }
    }
    impl Borrow<X509Ref> for X509 {
        fn borrow(&self) -> &X509Ref {
            match *self {}
        }
    }

    pub enum X509Ref {}
    impl ToOwned for X509Ref {
        type Owned = X509;
        fn to_owned(&self) -> X509 {
            match *self {}
        }
    }
    impl X509Ref {
        pub fn subject_name(&self) -> &X509NameRef {
            match *self {}
        }
        pub fn issuer_name(&self) -> &X509NameRef {
            match *self {}
        }
        pub fn not_after(&self) -> &Asn1TimeRef {
            match *self {}
        }
        pub fn serial_number(&self) -> &Asn1IntegerRef {
            match *self {}
        }
        pub fn digest(&self, _: MessageDigest) -> Result<DigestBytes, ErrorStack> {
            match *self {}
        }
        pub fn subject_alt_names(&self) -> Option<Vec<GeneralName>> {
            match *self {}
        }
        pub fn to_pem(&self) -> Result<Vec<u8>, ErrorStack> {
            match *self {}
        }
        pub fn public_key(&self) -> Result<PKey<Public>, ErrorStack> {
            match *self {}
        }
        pub fn verify<T>(&self, _: &PKey<T>) -> Result<bool, ErrorStack> {
            match *self {}
        }
    }

    pub enum X509NameRef {}
    impl X509NameRef {
        pub fn to_der(&self) -> Result<Vec<u8>, ErrorStack> {
            match *self {}
        }
        pub fn entries(&self) -> std::iter::Empty<&X509NameEntryRef> {
            match *self {}
        }
    }

    pub enum X509NameEntryRef {}
    impl X509NameEntryRef {
        pub fn object(&self) -> &Asn1ObjectRef {
            match *self {}
        }
        pub fn data(&self) -> &Asn1StringRef {
            match *self {}
        }
    }

    pub enum GeneralName {}
    impl GeneralName {
        pub fn dnsname(&self) -> Option<&str> {
            match *self {}
        }
        pub fn email(&self) -> Option<&str> {
            match *self {}
        }
        pub fn uri(&self) -> Option<&str> {
            match *self {}
        }
        pub fn ipaddress(&self) -> Option<&[u8]> {
            match *self {}
        }
    }
}

// `boring_sys`: raw types, NIDs and functions.

pub enum X509_NAME_ENTRY {}
pub enum ASN1_OBJECT {}
pub enum ASN1_STRING {}

/// No entry exists: "not in a set".
pub unsafe fn X509_NAME_ENTRY_set(_: *const X509_NAME_ENTRY) -> c_int {
    -1
}

/// 0: nothing written (OBJ_obj2txt's failure value).
pub unsafe fn OBJ_obj2txt(_: *mut c_char, _: c_int, _: *const ASN1_OBJECT, _: c_int) -> c_int {
    0
}

/// -1: conversion failed (ASN1_STRING_to_UTF8's failure value).
pub unsafe fn ASN1_STRING_to_UTF8(_: *mut *mut u8, _: *const ASN1_STRING) -> c_int {
    -1
}

pub unsafe fn OPENSSL_free(_: *mut c_void) {}

// BoringSSL's values (include/openssl/nid.h), so a table keyed by them stays distinct.
pub const NID_commonName: c_int = 13;
pub const NID_countryName: c_int = 14;
pub const NID_localityName: c_int = 15;
pub const NID_stateOrProvinceName: c_int = 16;
pub const NID_organizationName: c_int = 17;
pub const NID_organizationalUnitName: c_int = 18;
pub const NID_pkcs9_emailAddress: c_int = 48;
pub const NID_pkcs9_unstructuredName: c_int = 49;
pub const NID_serialNumber: c_int = 105;
pub const NID_title: c_int = 106;
pub const NID_description: c_int = 107;
pub const NID_surname: c_int = 100;
pub const NID_givenName: c_int = 99;
pub const NID_initials: c_int = 101;
pub const NID_name: c_int = 173;
pub const NID_dnQualifier: c_int = 174;
pub const NID_streetAddress: c_int = 660;
pub const NID_postalCode: c_int = 661;
pub const NID_generationQualifier: c_int = 509;
pub const NID_pseudonym: c_int = 510;
pub const NID_role: c_int = 400;
pub const NID_businessCategory: c_int = 860;
pub const NID_domainComponent: c_int = 391;
pub const NID_userId: c_int = 458;
