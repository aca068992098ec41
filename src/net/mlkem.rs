//! X25519MLKEM768 (draft-ietf-tls-ecdhe-mlkem) for the CLI's ring provider,
//! client side only: ML-KEM-768 from RustCrypto's `ml-kem`, X25519 from
//! rustls's ring provider. ring has no ML-KEM, and aws-lc-rs's would bring
//! most of aws-lc back with it (docs/PERFORMANCE.md).
//!
//! The shares are laid out as the draft says: the client sends the ML-KEM
//! encapsulation key (1184 bytes) then its X25519 share (32), the server
//! answers the ML-KEM ciphertext (1088) then its X25519 share (32), and the
//! shared secret is the ML-KEM secret followed by the X25519 one. Being a
//! hybrid, the connection is at least as strong as X25519 alone whatever
//! becomes of ML-KEM. The X25519 part is also offered as a share of its own
//! (`hybrid_component`), so a server without ML-KEM picks X25519 at once.

use ml_kem::kem::Decapsulate;
use ml_kem::{B32, EncodedSizeUser, KemCore, MlKem768};
use tokio_rustls::rustls::crypto::{
    ActiveKeyExchange, CompletedKeyExchange, SecureRandom, SharedSecret, SupportedKxGroup,
};
use tokio_rustls::rustls::{Error, NamedGroup, PeerMisbehaved, ProtocolVersion};

const ENCAPSULATION_KEY_LEN: usize = 1184;
const CIPHERTEXT_LEN: usize = 1088;
const X25519_LEN: usize = 32;

/// X25519MLKEM768 with X25519 from `classical` (ring's) and random numbers
/// from `random` (ring's).
#[derive(Debug)]
pub struct X25519MlKem768 {
    pub classical: &'static dyn SupportedKxGroup,
    pub random: &'static dyn SecureRandom,
}

impl SupportedKxGroup for X25519MlKem768 {
    fn start(&self) -> Result<Box<dyn ActiveKeyExchange>, Error> {
        let classical = self.classical.start()?;
        // FIPS 203's ML-KEM.KeyGen: d and z drawn from the system's CSPRNG,
        // then the key pair derived from them.
        let mut d = B32::default();
        let mut z = B32::default();
        self.random.fill(&mut d)?;
        self.random.fill(&mut z)?;
        let (dk, ek) = MlKem768::generate_deterministic(&d, &z);
        let mut pub_key = Vec::with_capacity(ENCAPSULATION_KEY_LEN + X25519_LEN);
        pub_key.extend_from_slice(&ek.as_bytes());
        pub_key.extend_from_slice(classical.pub_key());
        Ok(Box::new(Active {
            classical,
            dk,
            pub_key,
        }))
    }

    /// The server's side, which the CLI never takes.
    fn start_and_complete(&self, _client_share: &[u8]) -> Result<CompletedKeyExchange, Error> {
        Err(Error::General(
            "X25519MLKEM768 is implemented for clients only".into(),
        ))
    }

    fn name(&self) -> NamedGroup {
        NamedGroup::X25519MLKEM768
    }

    fn usable_for_version(&self, version: ProtocolVersion) -> bool {
        version == ProtocolVersion::TLSv1_3
    }
}

struct Active {
    classical: Box<dyn ActiveKeyExchange>,
    dk: <MlKem768 as KemCore>::DecapsulationKey,
    pub_key: Vec<u8>,
}

impl ActiveKeyExchange for Active {
    fn complete(self: Box<Self>, peer: &[u8]) -> Result<SharedSecret, Error> {
        if peer.len() != CIPHERTEXT_LEN + X25519_LEN {
            return Err(Error::PeerMisbehaved(PeerMisbehaved::InvalidKeyShare));
        }
        let (ct, x25519) = peer.split_at(CIPHERTEXT_LEN);
        let ct = ml_kem::Ciphertext::<MlKem768>::try_from(ct)
            .map_err(|_| Error::PeerMisbehaved(PeerMisbehaved::InvalidKeyShare))?;
        // ML-KEM decapsulation cannot fail (a bad ciphertext gives a secret
        // the server does not have, and the handshake fails on it).
        let pq = self
            .dk
            .decapsulate(&ct)
            .map_err(|()| Error::PeerMisbehaved(PeerMisbehaved::InvalidKeyShare))?;
        let cl = self.classical.complete(x25519)?;
        let mut secret = Vec::with_capacity(64);
        secret.extend_from_slice(&pq);
        secret.extend_from_slice(cl.secret_bytes());
        Ok(SharedSecret::from(secret))
    }

    fn hybrid_component(&self) -> Option<(NamedGroup, &[u8])> {
        Some((self.classical.group(), self.classical.pub_key()))
    }

    fn complete_hybrid_component(self: Box<Self>, peer: &[u8]) -> Result<SharedSecret, Error> {
        self.classical.complete(peer)
    }

    fn pub_key(&self) -> &[u8] {
        &self.pub_key
    }

    fn group(&self) -> NamedGroup {
        NamedGroup::X25519MLKEM768
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ml_kem::EncapsulateDeterministic;
    use tokio_rustls::rustls::crypto::ring;

    fn group() -> X25519MlKem768 {
        X25519MlKem768 {
            classical: ring::kx_group::X25519,
            random: ring::default_provider().secure_random,
        }
    }

    /// The server's side done by hand: encapsulate to the client's key,
    /// X25519 with ring; both ends must hold the same 64 bytes.
    #[test]
    fn both_ends_derive_the_same_secret() {
        let client = group().start().unwrap();
        let share = client.pub_key().to_vec();
        assert_eq!(share.len(), ENCAPSULATION_KEY_LEN + X25519_LEN);
        let ek_bytes = ml_kem::Encoded::<<MlKem768 as KemCore>::EncapsulationKey>::try_from(
            &share[..ENCAPSULATION_KEY_LEN],
        )
        .unwrap();
        let ek = <MlKem768 as KemCore>::EncapsulationKey::from_bytes(&ek_bytes);
        let mut m = B32::default();
        ring::default_provider().secure_random.fill(&mut m).unwrap();
        let (ct, pq) = ek.encapsulate_deterministic(&m).unwrap();
        let server_x = ring::kx_group::X25519.start().unwrap();
        let mut answer = ct.to_vec();
        answer.extend_from_slice(server_x.pub_key());
        let server_cl = server_x.complete(&share[ENCAPSULATION_KEY_LEN..]).unwrap();
        let mut expected = pq.to_vec();
        expected.extend_from_slice(server_cl.secret_bytes());

        let got = client.complete(&answer).unwrap();
        assert_eq!(got.secret_bytes(), &expected[..]);
    }

    #[test]
    fn a_share_of_the_wrong_length_is_refused() {
        let client = group().start().unwrap();
        assert!(client.complete(&[0u8; 1119]).is_err());
    }

    #[test]
    fn the_x25519_part_is_offered_on_its_own_too() {
        let client = group().start().unwrap();
        let (name, key) = client.hybrid_component().unwrap();
        assert_eq!(name, NamedGroup::X25519);
        assert_eq!(key, &client.pub_key()[ENCAPSULATION_KEY_LEN..]);
    }
}
