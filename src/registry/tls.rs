//! Server certificate verification when the user gives `--ca-file`: the system's roots plus the
//! given certificates, as reqwest does by default, and one addition.
//!
//! The self-signed certificate made by Docker's recipe (`openssl req -x509 … -addext
//! subjectAltName=IP:…`) is its own CA: it carries `basicConstraints CA:TRUE`. Given as a CA
//! file, curl and skopeo accept it as the server's certificate, but webpki refuses a CA
//! certificate as an end entity (`CaUsedAsEndEntity`). This verifier accepts exactly that case:
//! when normal verification fails with `CaUsedAsEndEntity`, the server's certificate is
//! byte-for-byte one the user listed, and it names the host and is within its validity period.
//! Anything else fails as it would without the addition.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::verify_server_name;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{CertificateError, DigitallySignedStruct, Error, SignatureScheme};

/// A rustls client config that trusts the system's roots and `extra` (DER certificates), with
/// the self-signed-as-own-CA addition described in the module docs.
pub(super) fn client_config(extra: Vec<CertificateDer<'static>>) -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let inner = rustls_platform_verifier::Verifier::new_with_extra_roots(extra.clone(), provider.clone())
        .map_err(|e| format!("cannot load the trusted certificates: {e}"))?;
    let verifier = PinnedSelfSigned {
        inner,
        pinned: extra,
        provider: provider.clone(),
    };
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("cannot set up TLS: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    Ok(config)
}

#[derive(Debug)]
struct PinnedSelfSigned {
    inner: rustls_platform_verifier::Verifier,
    /// The certificates from `--ca-file`.
    pinned: Vec<CertificateDer<'static>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedSelfSigned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let refused =
            match self
                .inner
                .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
            {
                Ok(verified) => return Ok(verified),
                Err(err) => err,
            };
        if !is_ca_used_as_end_entity(&refused)
            || !self.pinned.iter().any(|p| p.as_ref() == end_entity.as_ref())
        {
            return Err(refused);
        }
        let parsed = ParsedCertificate::try_from(end_entity)?;
        verify_server_name(&parsed, server_name)?;
        check_validity(end_entity, now)?;
        tracing::debug!(%refused, "accepting the server's self-signed certificate: it is one given with --ca-file");
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Whether rustls refused a certificate because it is a CA used as the end entity. rustls has no
/// variant of its own for it and passes webpki's error on as an "other" certificate error.
fn is_ca_used_as_end_entity(err: &Error) -> bool {
    matches!(err, Error::InvalidCertificate(_)) && format!("{err:?}").contains("CaUsedAsEndEntity")
}

/// Checks the validity period (notBefore ≤ now ≤ notAfter) of a DER certificate, which the
/// normal path checks while building the chain.
fn check_validity(der: &[u8], now: UnixTime) -> Result<(), Error> {
    let (not_before, not_after) =
        validity(der).ok_or(Error::InvalidCertificate(CertificateError::BadEncoding))?;
    let now = now.as_secs() as i64;
    if now < not_before {
        return Err(Error::InvalidCertificate(CertificateError::NotValidYet));
    }
    if now > not_after {
        return Err(Error::InvalidCertificate(CertificateError::Expired));
    }
    Ok(())
}

/// The validity period of an X.509 certificate in Unix seconds, read from its DER:
/// Certificate ::= SEQUENCE { tbsCertificate SEQUENCE { [0] version?, serialNumber, signature,
/// issuer, validity SEQUENCE { notBefore, notAfter }, … } … }.
fn validity(der: &[u8]) -> Option<(i64, i64)> {
    let (_, cert, _) = read_tlv(der)?;
    let (_, tbs, _) = read_tlv(cert)?;
    let mut rest = tbs;
    let (tag, _, after) = read_tlv(rest)?;
    if tag == 0xa0 {
        rest = after; // the explicit version
    }
    for _ in 0..3 {
        let (_, _, after) = read_tlv(rest)?; // serialNumber, signature, issuer
        rest = after;
    }
    let (tag, validity, _) = read_tlv(rest)?;
    if tag != 0x30 {
        return None;
    }
    let (tag_before, before, after) = read_tlv(validity)?;
    let (tag_after, not_after, _) = read_tlv(after)?;
    Some((parse_time(tag_before, before)?, parse_time(tag_after, not_after)?))
}

/// One DER tag-length-value: (tag, contents, what follows).
fn read_tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let len = rest[..count]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, &rest[count..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

/// UTCTime (`YYMMDDHHMMSSZ`, tag 0x17) or GeneralizedTime (`YYYYMMDDHHMMSSZ`, tag 0x18).
fn parse_time(tag: u8, bytes: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(bytes).ok()?.strip_suffix('Z')?;
    let full = match (tag, text.len()) {
        (0x17, 12) => {
            let yy: i32 = text[..2].parse().ok()?;
            let century = if yy >= 50 { "19" } else { "20" };
            format!("{century}{text}")
        }
        (0x18, 14) => text.to_owned(),
        _ => return None,
    };
    let num = |range: std::ops::Range<usize>| full.get(range)?.parse::<i8>().ok();
    let year: i16 = full.get(0..4)?.parse().ok()?;
    let date = jiff::civil::date(year, num(4..6)?, num(6..8)?);
    let time = jiff::civil::time(num(8..10)?, num(10..12)?, num(12..14)?, 0);
    let stamp = date.to_datetime(time).to_zoned(jiff::tz::TimeZone::UTC).ok()?;
    Some(stamp.timestamp().as_second())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_times() {
        assert_eq!(parse_time(0x17, b"700101000000Z"), Some(0));
        assert_eq!(parse_time(0x18, b"20260101000000Z"), Some(1_767_225_600));
        assert_eq!(parse_time(0x17, b"260101000000Z"), Some(1_767_225_600));
        assert_eq!(parse_time(0x17, b"2601010000Z"), None);
        assert_eq!(parse_time(0x18, b"garbage"), None);
    }

    #[test]
    fn tlv_refuses_short_input() {
        assert!(read_tlv(&[0x30, 0x05, 1, 2]).is_none());
        assert!(read_tlv(&[0x30]).is_none());
        assert!(validity(b"not a certificate").is_none());
        assert_eq!(
            read_tlv(&[0x02, 0x01, 7, 9]),
            Some((0x02, &[7u8][..], &[9u8][..]))
        );
    }
}
