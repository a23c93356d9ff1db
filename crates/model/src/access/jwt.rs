//! JWTs of an identity provider (Keycloak, Auth0, ...): accepted like a token when the signature
//! verifies with the configured key (EdDSA, ES256 or RS256 public key, or an HS256 secret), `exp`
//! is in the future, `aud` names this server and a `scope` claim lists what the holder may do.

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use super::{Caller, CredentialKind, Refusal, Scopes};

/// The key JWTs are verified with.
pub enum JwtKey {
    /// A PEM public key: Ed25519 (EdDSA), P-256 (ES256) or RSA (RS256).
    PublicPem(Vec<u8>),
    /// A shared HS256 secret.
    Hs256Secret(Vec<u8>),
}

#[derive(Deserialize)]
struct Claims {
    sub: Option<String>,
    scope: Option<String>,
}

/// Checks JWTs against one key and one audience.
pub struct JwtVerifier {
    key: DecodingKey,
    validation: Validation,
}

impl JwtVerifier {
    /// A verifier for `key`; the error says why the key cannot be used.
    pub fn new(key: JwtKey, audience: &str) -> Result<Self, String> {
        let (key, algorithm) = match key {
            JwtKey::Hs256Secret(secret) => {
                if secret.len() < 32 {
                    return Err("an HS256 secret must be at least 32 bytes".into());
                }
                (DecodingKey::from_secret(&secret), Algorithm::HS256)
            }
            JwtKey::PublicPem(pem) => {
                if let Ok(key) = DecodingKey::from_ed_pem(&pem) {
                    (key, Algorithm::EdDSA)
                } else if let Ok(key) = DecodingKey::from_ec_pem(&pem) {
                    (key, Algorithm::ES256)
                } else if let Ok(key) = DecodingKey::from_rsa_pem(&pem) {
                    (key, Algorithm::RS256)
                } else {
                    return Err("not a PEM Ed25519, P-256 or RSA public key".into());
                }
            }
        };
        if audience.is_empty() {
            return Err("an audience is required (jwt_audience)".into());
        }
        let mut validation = Validation::new(algorithm);
        validation.algorithms = vec![algorithm];
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "aud"]);
        validation.leeway = 30;
        Ok(Self { key, validation })
    }

    /// The caller the JWT names, or why it is refused.
    pub fn verify(&self, token: &str) -> Result<Caller, Refusal> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation).map_err(|e| match e.kind() {
            ErrorKind::ExpiredSignature => Refusal::Expired,
            ErrorKind::InvalidSignature => Refusal::BadSignature,
            ErrorKind::InvalidAudience => Refusal::WrongAudience,
            ErrorKind::InvalidAlgorithm => {
                Refusal::Malformed("JWT signed with an algorithm this server does not accept".into())
            }
            ErrorKind::MissingRequiredClaim(claim) => Refusal::Malformed(format!("JWT without the {claim} claim")),
            _ => Refusal::Malformed(format!("JWT: {e}")),
        })?;
        let scope = data
            .claims
            .scope
            .ok_or_else(|| Refusal::Malformed("JWT without the scope claim".into()))?;
        let subject = data.claims.sub.unwrap_or_else(|| "jwt".into());
        Ok(Caller {
            key: format!("jwt:{subject}"),
            name: subject,
            scopes: Scopes::parse_known(&scope),
            credential: CredentialKind::Jwt,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::Scope;
    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::json;

    fn now() -> i64 {
        crate::clock::now_ms() / 1000
    }

    fn claims(aud: &str, exp: i64) -> serde_json::Value {
        json!({"sub": "alice", "aud": aud, "exp": exp, "scope": "openid content:write metrics:read"})
    }

    fn key_pair(algorithm: &'static rcgen::SignatureAlgorithm) -> (EncodingKey, Vec<u8>) {
        let pair = rcgen::KeyPair::generate_for(algorithm).unwrap();
        let private = pair.serialize_pem();
        let encoding = if std::ptr::eq(algorithm, &rcgen::PKCS_ED25519) {
            EncodingKey::from_ed_pem(private.as_bytes()).unwrap()
        } else {
            EncodingKey::from_ec_pem(private.as_bytes()).unwrap()
        };
        (encoding, pair.public_key_pem().into_bytes())
    }

    #[test]
    fn eddsa_and_es256_jwts_are_accepted_with_their_scopes() {
        for (algorithm, header) in [
            (&rcgen::PKCS_ED25519, Algorithm::EdDSA),
            (&rcgen::PKCS_ECDSA_P256_SHA256, Algorithm::ES256),
        ] {
            let (signing, public) = key_pair(algorithm);
            let verifier = JwtVerifier::new(JwtKey::PublicPem(public), "ipfs-stream").unwrap();
            let jwt =
                jsonwebtoken::encode(&Header::new(header), &claims("ipfs-stream", now() + 600), &signing).unwrap();
            let caller = verifier.verify(&jwt).unwrap();
            assert_eq!(caller.name, "alice");
            assert_eq!(caller.credential, CredentialKind::Jwt);
            assert!(caller.may(Scope::ContentWrite) && caller.may(Scope::MetricsRead));
            assert!(!caller.may(Scope::ContentDelete));
        }
    }

    #[test]
    fn each_bad_claim_is_refused_by_name() {
        let secret = b"a shared secret of thirty-two bytes or more".to_vec();
        let verifier = JwtVerifier::new(JwtKey::Hs256Secret(secret.clone()), "ipfs-stream").unwrap();
        let sign = |claims: serde_json::Value| {
            jsonwebtoken::encode(
                &Header::new(Algorithm::HS256),
                &claims,
                &EncodingKey::from_secret(&secret),
            )
            .unwrap()
        };
        assert!(verifier.verify(&sign(claims("ipfs-stream", now() + 600))).is_ok());
        assert_eq!(
            verifier.verify(&sign(claims("ipfs-stream", now() - 3600))).unwrap_err(),
            Refusal::Expired
        );
        assert_eq!(
            verifier.verify(&sign(claims("another-api", now() + 600))).unwrap_err(),
            Refusal::WrongAudience
        );
        let forged = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims("ipfs-stream", now() + 600),
            &EncodingKey::from_secret(b"another secret of thirty-two bytes, or more"),
        )
        .unwrap();
        assert_eq!(verifier.verify(&forged).unwrap_err(), Refusal::BadSignature);
        let no_scope = sign(json!({"sub": "bob", "aud": "ipfs-stream", "exp": now() + 600}));
        assert!(matches!(verifier.verify(&no_scope).unwrap_err(), Refusal::Malformed(m) if m.contains("scope")));
        let no_exp = sign(json!({"aud": "ipfs-stream", "scope": "admin"}));
        assert!(matches!(verifier.verify(&no_exp).unwrap_err(), Refusal::Malformed(m) if m.contains("exp")));
        // An EdDSA token against an HS256 verifier: the algorithm is not the configured one.
        let (signing, _) = key_pair(&rcgen::PKCS_ED25519);
        let other = jsonwebtoken::encode(
            &Header::new(Algorithm::EdDSA),
            &claims("ipfs-stream", now() + 600),
            &signing,
        )
        .unwrap();
        assert!(matches!(verifier.verify(&other).unwrap_err(), Refusal::Malformed(_)));
        assert!(matches!(verifier.verify("a.b.c").unwrap_err(), Refusal::Malformed(_)));
    }

    #[test]
    fn unusable_keys_are_named() {
        assert!(JwtVerifier::new(JwtKey::PublicPem(b"not a key".to_vec()), "x").is_err());
        assert!(JwtVerifier::new(JwtKey::Hs256Secret(b"short".to_vec()), "x").is_err());
        assert!(JwtVerifier::new(JwtKey::Hs256Secret(vec![7; 32]), "").is_err());
    }
}
