//! PKCS #7: a certs-only ("degenerate") SignedData in DER, the `.p7b` Windows and Java import.
//! The openssl crate has no safe constructor without a signer, so this builds it through
//! openssl-sys; the bytes equal `openssl crl2pkcs7 -nocrl -certfile … -outform DER`.
use foreign_types::ForeignType;
use openssl::pkcs7::Pkcs7;
use openssl::x509::X509;

use super::FormatError;

unsafe extern "C" {
    // Not bound by openssl-sys; part of libcrypto's public API.
    fn PKCS7_ctrl(
        p7: *mut openssl_sys::PKCS7,
        cmd: libc::c_int,
        larg: libc::c_long,
        parg: *mut libc::c_char,
    ) -> libc::c_long;
}

const PKCS7_OP_SET_DETACHED_SIGNATURE: libc::c_int = 1;

pub fn render(certs: &[X509]) -> Result<Vec<u8>, FormatError> {
    // SAFETY: every pointer comes from OpenSSL and is checked; ownership of `p7` passes to the
    // `Pkcs7` wrapper (freed on drop); PKCS7_add_certificate takes its own reference.
    unsafe {
        let p7 = openssl_sys::PKCS7_new();
        if p7.is_null() {
            return Err(openssl::error::ErrorStack::get().into());
        }
        let p7 = Pkcs7::from_ptr(p7);
        let ptr = p7.as_ptr();
        if openssl_sys::PKCS7_set_type(ptr, openssl_sys::NID_pkcs7_signed) != 1
            || openssl_sys::PKCS7_content_new(ptr, openssl_sys::NID_pkcs7_data) != 1
        {
            return Err(openssl::error::ErrorStack::get().into());
        }
        for c in certs {
            if openssl_sys::PKCS7_add_certificate(ptr, c.as_ptr()) != 1 {
                return Err(openssl::error::ErrorStack::get().into());
            }
        }
        // No eContent: a detached, signer-less SignedData.
        PKCS7_ctrl(ptr, PKCS7_OP_SET_DETACHED_SIGNATURE, 1, std::ptr::null_mut());
        Ok(p7.as_ref().to_der()?)
    }
}
