//! `X-Hub-Signature-256`: HMAC-SHA256 of the body under the webhook secret.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// Whether `header` (`sha256=<hex>`) signs `body` with `secret`, compared in constant time.
pub fn verify(secret: &[u8], body: &[u8], header: Option<&str>) -> bool {
    let Some(hex_sig) = header.and_then(|h| h.strip_prefix("sha256=")) else {
        return false;
    };
    let Ok(given) = hex::decode(hex_sig.trim()) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return false;
    };
    mac.update(body);
    let expected = mac.finalize().into_bytes();
    expected.as_slice().ct_eq(&given).into()
}

#[cfg(test)]
mod tests {
    use super::verify;

    #[test]
    fn github_documented_example() {
        // From GitHub's docs ("Validating webhook deliveries"): secret "It's a Secret to Everybody".
        let sig = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert!(verify(
            b"It's a Secret to Everybody",
            b"Hello, World!",
            Some(sig)
        ));
        assert!(!verify(b"another secret", b"Hello, World!", Some(sig)));
        assert!(!verify(
            b"It's a Secret to Everybody",
            b"Hello, World?",
            Some(sig)
        ));
        assert!(!verify(
            b"It's a Secret to Everybody",
            b"Hello, World!",
            Some("sha1=757107ea")
        ));
        assert!(!verify(
            b"It's a Secret to Everybody",
            b"Hello, World!",
            Some("sha256=zz")
        ));
        assert!(!verify(
            b"It's a Secret to Everybody",
            b"Hello, World!",
            None
        ));
    }
}
