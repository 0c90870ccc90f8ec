//! Property tests of membership certificates: round trips, hostile bytes, tampering.

use proptest::prelude::*;
use wasmesh_keys::{Keypair, MembershipCert, PublicKey, SignedMembershipCert};

fn cert() -> impl Strategy<Value = (SignedMembershipCert, PublicKey)> {
    (
        any::<[u8; 32]>(),
        "[a-z0-9-]{1,64}",
        any::<[u8; 32]>(),
        any::<u64>(),
        any::<u64>(),
    )
        .prop_map(|(admin_seed, mesh, node, a, b)| {
            let admin = Keypair::from_seed(admin_seed);
            let cert = MembershipCert {
                mesh,
                node: PublicKey(node),
                admin: admin.public(),
                not_before_ms: a.min(b),
                expires_at_ms: a.max(b),
            };
            (cert.sign(&admin), admin.public())
        })
}

proptest! {
    #[test]
    fn round_trips((signed, _) in cert()) {
        prop_assert_eq!(SignedMembershipCert::decode(&signed.encode()).unwrap(), signed);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = SignedMembershipCert::decode(&bytes);
    }

    #[test]
    fn any_changed_byte_fails((signed, admin) in cert(), index in any::<prop::sample::Index>(), flip in 1u8..=255) {
        let now = signed.cert.not_before_ms;
        let mut bytes = signed.encode();
        let i = index.index(bytes.len());
        bytes[i] ^= flip;
        if let Ok(decoded) = SignedMembershipCert::decode(&bytes) {
            // Only a change that leaves the window open at `now` and the signature intact could
            // pass; the signature covers every byte of the certificate.
            prop_assert!(decoded.verify(&admin, now).is_err());
        }
    }
}
