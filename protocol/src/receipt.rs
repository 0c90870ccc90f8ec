//! Receipts: what the node that executed a forwarded request signs about it.
//!
//! A receipt names the executing node's key, the blob run, digests of the input and of the
//! outcome (the output, or the failure kind and message), the request's trace id, the nonce
//! the forwarding node chose for this forward (so a receipt answers one request only and cannot
//! be replayed for another), and the queueing and execution times the executor reports. The
//! executing node signs it with its node key; only the signature travels (the forwarding node
//! knows or receives every other field), and the forwarding node checks it against the key the
//! peer's QUIC certificate carries before it takes the answer.
//!
//! What a receipt proves: *accountability*. The named node claims, under its key, that running
//! this blob on this input gave this outcome; a node that lies can be shown to have lied by
//! running the blob again (raw-ABI guests import nothing, so they are deterministic given their
//! input: [`comparable_outcome`]). What it does not prove: *correctness*. A node can sign a
//! wrong answer; the signature makes the lie attributable, and the forwarding node's spot
//! checks and clients' agreement requests catch it.

use bincode::{Decode, Encode};

use crate::codec::{self, DecodeError};
use crate::crypto::{Keypair, PublicKey, Signature, SignatureError};
use crate::hash::ContentHash;
use crate::wire::FailureKind;

/// Domain tag of receipt signatures.
pub const RECEIPT_DOMAIN: &[u8] = b"wasmesh/receipt/v2\0";

/// Largest encoded signed receipt.
pub const MAX_SIGNED_RECEIPT_SIZE: usize = 256;

/// What the executing node vouches for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
pub struct Receipt {
    /// The node that executed the request.
    pub executor: PublicKey,
    /// The blob it ran.
    pub module: ContentHash,
    /// BLAKE3 of the request body.
    pub input: ContentHash,
    /// [`Receipt::output_outcome`] or [`Receipt::failure_outcome`].
    pub outcome: ContentHash,
    /// The request's trace id.
    pub trace_id: u64,
    /// The forwarding node's nonce for this forward.
    pub nonce: u64,
    /// Time the executor says the request queued for a slot, microseconds.
    pub queue_us: u64,
    /// Time the executor says the guest ran, microseconds.
    pub exec_us: u64,
}

/// A receipt with the executor's signature: what a client gets in `x-wasmesh-receipt`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
pub struct SignedReceipt {
    /// The receipt.
    pub receipt: Receipt,
    /// The executor's signature over it.
    pub signature: Signature,
}

impl Receipt {
    /// The outcome of a run that answered `output`.
    pub fn output_outcome(output: &[u8]) -> ContentHash {
        ContentHash::of(output)
    }

    /// The outcome of a run that failed with `kind` and `message`.
    pub fn failure_outcome(kind: FailureKind, message: &str) -> ContentHash {
        let mut hasher = blake3::Hasher::new();
        hasher.update(b"guest failed: ");
        hasher.update(kind.as_str().as_bytes());
        hasher.update(b"\0");
        hasher.update(message.as_bytes());
        ContentHash(*hasher.finalize().as_bytes())
    }

    /// Signs it with the executor's keys.
    pub fn sign(self, keys: &Keypair) -> SignedReceipt {
        SignedReceipt {
            signature: keys.sign_encoded(RECEIPT_DOMAIN, &self),
            receipt: self,
        }
    }

    /// Checks `signature` against the executor named in the receipt.
    pub fn verify(&self, signature: &Signature) -> Result<(), SignatureError> {
        self.executor
            .verify_encoded(RECEIPT_DOMAIN, self, signature)
    }
}

/// What two runs of a deterministic guest on the same input must agree on: the output's
/// digest, or the failure kind (messages may differ between versions of the runtime); `None`
/// for outcomes that depend on the node rather than the guest (a timeout, a busy node, a
/// module the node cannot run).
pub fn comparable_outcome(outcome: Result<&[u8], FailureKind>) -> Option<ContentHash> {
    match outcome {
        Ok(output) => Some(Receipt::output_outcome(output)),
        Err(FailureKind::Timeout | FailureKind::Busy | FailureKind::InvalidModule) => None,
        Err(kind) => Some(Receipt::failure_outcome(kind, "")),
    }
}

impl SignedReceipt {
    /// Checks the signature.
    pub fn verify(&self) -> Result<(), SignatureError> {
        self.receipt.verify(&self.signature)
    }

    /// The wire encoding.
    pub fn encode(&self) -> Vec<u8> {
        codec::encode(self)
    }

    /// Decodes a signed receipt of at most [`MAX_SIGNED_RECEIPT_SIZE`] bytes. Does not verify.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        codec::decode(bytes, MAX_SIGNED_RECEIPT_SIZE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receipt(keys: &Keypair) -> Receipt {
        Receipt {
            executor: keys.public(),
            module: ContentHash::of(b"module"),
            input: ContentHash::of(b"in"),
            outcome: Receipt::output_outcome(b"out"),
            trace_id: 7,
            nonce: 11,
            queue_us: 5,
            exec_us: 300,
        }
    }

    #[test]
    fn a_receipt_verifies_only_as_signed() {
        let keys = Keypair::from_seed([4; 32]);
        let signed = receipt(&keys).sign(&keys);
        assert_eq!(signed.verify(), Ok(()));
        assert_eq!(SignedReceipt::decode(&signed.encode()), Ok(signed));
        let mut changed = signed;
        changed.receipt.outcome = Receipt::output_outcome(b"other");
        assert!(changed.verify().is_err());
        // Signed by another key than the one it names.
        let other = Keypair::from_seed([5; 32]);
        let forged = SignedReceipt {
            receipt: receipt(&keys),
            signature: receipt(&keys).sign(&other).signature,
        };
        assert!(forged.verify().is_err());
    }

    #[test]
    fn a_failure_and_an_output_never_share_an_outcome() {
        assert_ne!(
            Receipt::failure_outcome(FailureKind::Trap, ""),
            Receipt::output_outcome(b"trap")
        );
        assert_ne!(
            Receipt::failure_outcome(FailureKind::Trap, "unreachable"),
            Receipt::failure_outcome(FailureKind::Trap, "other")
        );
        assert_eq!(
            comparable_outcome(Err(FailureKind::Trap)),
            Some(Receipt::failure_outcome(FailureKind::Trap, ""))
        );
        assert_eq!(comparable_outcome(Err(FailureKind::Timeout)), None);
    }
}
